"""Noise2Void in PyTorch: self-supervised denoising (N2V, N2V2, structN2V).

Train on the noisy images themselves, then denoise them::

    from ij_bridge.n2v import N2V, N2VConfig
    model = N2V(N2VConfig(axes="YX", epochs=10, steps_per_epoch=100))
    history = model.train(noisy)          # pandas DataFrame, one row per epoch
    clean = model.predict(noisy)          # float32, same layout as the input
    model.save("n2v_model.zip")
    same = N2V.load("n2v_model.zip")

This package imports neither Java nor ImageJ.
"""

from .config import N2VConfig, StructMask
from .model import N2V

__all__ = ["N2V", "N2VConfig", "StructMask"]
