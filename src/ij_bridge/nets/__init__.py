"""Torch building blocks shared by the N2V and StarDist models (no Java)."""

from .unet import UNet, BlurPool

__all__ = ["UNet", "BlurPool"]
