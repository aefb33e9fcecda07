"""Device choice and the memory budget of one prediction, for both models.

>>> from ij_bridge.device import choose_device
>>> choose_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["choose_device", "memory_budget", "available_memory", "CUDA_FRACTION", "CPU_FRACTION",
           "CPU_CAP", "bf16_native", "autocast_dtype",
           "EmulatedBfloat16Warning", "warn_if_emulated", "to_device", "training_backends"]

CUDA_FRACTION = 0.4
"""Share of the GPU's free memory one prediction (one tile) may use."""
CPU_FRACTION = 0.25
"""Share of the available main memory one prediction may use on the CPU ..."""
CPU_CAP = 4 * 2**30
"""... but never more than this many bytes (a larger tile is hardly faster)."""


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or CUDA when available, else the CPU.

    Parameters
    ----------
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; None picks one.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def available_memory(default: int = 8 * 2**30) -> int:
    """Bytes of main memory available to new work (``MemAvailable``; page cache counts as free)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other POSIX systems: free pages only (an underestimate)
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return default


def memory_budget(device: torch.device) -> float:
    """Bytes one forward pass (one tile) may use on ``device``.

    CUDA: :data:`CUDA_FRACTION` of the free GPU memory. CPU:
    :data:`CPU_FRACTION` of the available memory, at most :data:`CPU_CAP`.
    The models turn this into a number of tiles with
    :func:`ij_bridge.tiles.auto_n_tiles`.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return CUDA_FRACTION * free
    return float(min(CPU_FRACTION * available_memory(), CPU_CAP))


_BF16: bool | None = None


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), per oneDNN and /proc/cpuinfo."""
    global _BF16
    if _BF16 is None:
        try:
            ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # an old torch or a build without oneDNN
            ok = False
        if ok:
            try:
                with open("/proc/cpuinfo") as f:
                    flags = f.read()
                ok = "avx512_bf16" in flags or "amx_bf16" in flags
            except OSError:
                pass
        _BF16 = ok
    return _BF16


class EmulatedBfloat16Warning(RuntimeWarning):
    """bfloat16 training was asked for on a CPU that has no bfloat16 arithmetic."""


def warn_if_emulated(dtype: torch.dtype | None, device: str | torch.device, option: str,
                     what: str = "training", has_auto: bool = True) -> bool:
    """Warn, once per call, when ``dtype`` is bfloat16 on a CPU without native bfloat16.

    There torch emulates bfloat16 outside oneDNN (im2col and a reference
    matrix product), so training is slower than float32, not faster: on an
    AVX2-only AMD EPYC a 2D StarDist training step took 8.5x float32's time
    and an N2V step 9x (docs/benchmarks.md).
    ``option`` names the setting in the message (e.g. ``"train_precision"``),
    ``what`` the work that will be slow (``"training"``, ``"prediction"``);
    ``has_auto``: whether the setting takes ``"auto"``, the fix named first.
    Returns whether it warned.
    """
    if dtype != torch.bfloat16 or torch.device(device).type != "cpu" or bf16_native():
        return False
    fix = f"{option}='auto' (float32 here) or 'float32'" if has_auto else f"{option}='float32'"
    warnings.warn(f"{option}='bfloat16' on a CPU without bfloat16 arithmetic (no AVX512-BF16 or AMX): "
                  f"torch emulates it, so {what} runs several times slower than in float32; set {fix}",
                  EmulatedBfloat16Warning, stacklevel=3)
    return True


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of training for a ``precision`` option on ``device`` (``None``: float32).

    ``"bfloat16"`` is bfloat16 everywhere; ``"auto"`` is bfloat16 where the
    hardware computes it natively, CPUs with AVX512-BF16/AMX
    (:func:`bf16_native`) and CUDA GPUs with bfloat16 tensor cores (compute
    capability 8.0 and later), and float32 elsewhere; ``"float32"`` is float32.

    >>> autocast_dtype("float32", "cpu") is None
    True
    >>> autocast_dtype("bfloat16", "cpu")
    torch.bfloat16
    """
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto":
        dev = torch.device(device)
        if dev.type == "cpu" and bf16_native():
            return torch.bfloat16
        if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(dev)[0] >= 8:
            return torch.bfloat16
    return None


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``t`` on ``device``, without waiting for the GPU.

    A plain ``.to("cuda")`` of a pageable CPU tensor waits until the copy is
    done, and so for every kernel queued before it: a host round trip per
    training step, which starves a GPU of small batches. On CUDA the tensor
    goes through pinned memory (torch's caching host allocator) and is copied
    asynchronously, ordered on the current stream. Elsewhere ``t`` is
    returned moved as usual (on the CPU, unchanged).

    >>> x = torch.arange(3)
    >>> to_device(x, "cpu") is x
    True
    """
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def training_backends(device: str | torch.device):
    """A context for seeded training on ``device``: deterministic cuDNN on CUDA.

    A seeded training is promised to repeat exactly, so cuDNN's autotuner
    (``benchmark``), whose choice of algorithm varies from run to run, stays
    off and its deterministic algorithms are used. The flags are set for the
    ``with`` block only, not for the whole process. Elsewhere nothing changes.
    """
    import contextlib

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True)
