"""GPU check for the numerical cores (run on a CUDA machine; prints a report).

* both models pick CUDA by default when torch sees a GPU;
* a short N2V and StarDist training runs on the GPU and the same weights predict
  the same on GPU and CPU (within float tolerance);
* seeded CUDA training is repeatable (N2V and StarDist: deterministic cuDNN);
* GPU vs CPU seconds per training step, measured in the same run.

Usage: ``python scripts/gpu_check.py`` (exits non-zero on a failed check).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from ij_bridge.metrics import matching
from ij_bridge.n2v import N2V, N2VConfig
from ij_bridge.stardist import StarDist2D, StarDistConfig
from ij_bridge.synthetic import noisy_image, synthetic_nuclei

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("\nPASS " if ok else "\nFAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def timed_train(make, *args, **kw):
    model = make()
    t0 = time.perf_counter()
    model.train(*args, **kw)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return model, time.perf_counter() - t0


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    clean, labels = synthetic_nuclei((256, 256), n_objects=40, seed=0)
    noisy = noisy_image(clean, sigma=0.15, seed=0)

    # ------------------------------------------------------------------ N2V
    steps = 60
    cfg = N2VConfig(epochs=2, steps_per_epoch=steps // 2, batch_size=16, patch_size=(64, 64), seed=1)
    m_gpu, t_gpu = timed_train(lambda: N2V(cfg), noisy)
    check(m_gpu.device.type == "cuda", "N2V picks CUDA by default")
    m_gpu2, _ = timed_train(lambda: N2V(cfg), noisy)
    same = all(torch.equal(a, b) for a, b in zip(m_gpu.net.state_dict().values(),
                                                 m_gpu2.net.state_dict().values()))
    check(same, "N2V: same seed gives the same weights on CUDA")
    pred_gpu = m_gpu.predict(noisy)
    m_gpu.save("/tmp/n2v_gpu_model", overwrite=True)
    m_cpu = N2V.load("/tmp/n2v_gpu_model", device="cpu")
    pred_cpu = m_cpu.predict(noisy)
    err = float(np.abs(pred_gpu - pred_cpu).max() / (np.abs(pred_cpu).max() + 1e-12))
    check(err < 1e-3, f"N2V: GPU and CPU predictions of the same weights agree (rel. max diff {err:.2e})")
    _, t_cpu = timed_train(lambda: N2V(N2VConfig(epochs=1, steps_per_epoch=10, batch_size=16,
                                                 patch_size=(64, 64), seed=1), device="cpu"), noisy)
    print(f"N2V train s/step: GPU {t_gpu / steps:.4f}, CPU {t_cpu / 10:.4f} "
          f"(x{(t_cpu / 10) / (t_gpu / steps):.1f})")
    from ij_bridge.device import autocast_dtype
    amp = autocast_dtype("auto", "cuda")
    m_auto, t_auto = timed_train(lambda: N2V(cfg.replace(precision="auto")), noisy)
    gain = float(np.mean((m_auto.predict(noisy) - clean) ** 2) / np.mean((pred_gpu - clean) ** 2))
    print(f"N2V train s/step on the GPU with precision='auto' ({amp}): {t_auto / steps:.4f} "
          f"(x{t_gpu / t_auto:.2f} float32's speed); MSE auto / float32 {gain:.2f}")

    # ------------------------------------------------------------------ StarDist
    X, Y = [], []
    for seed in range(6):
        x, y = synthetic_nuclei((256, 256), n_objects=40, seed=100 + seed)
        X.append(x)
        Y.append(y)
    sd_steps = 1000
    scfg = StarDistConfig(n_rays=32, grid=(2, 2), patch_size=(128, 128), batch_size=4, epochs=5,
                          steps_per_epoch=sd_steps // 5, seed=2)
    sd, t_sd = timed_train(lambda: StarDist2D(scfg), X[:5], Y[:5], validation_data=(X[5:], Y[5:]))
    check(sd.device.type == "cuda", "StarDist picks CUDA by default")
    small = StarDistConfig(n_rays=16, patch_size=(64, 64), batch_size=4, epochs=1, steps_per_epoch=20, seed=3)
    a, _ = timed_train(lambda: StarDist2D(small), X[:2], Y[:2])
    b, _ = timed_train(lambda: StarDist2D(small), X[:2], Y[:2])
    check(all(torch.equal(u, v) for u, v in zip(a.net.state_dict().values(), b.net.state_dict().values())),
          "StarDist: same seed gives the same weights on CUDA (deterministic cuDNN)")
    lab_gpu, _ = sd.predict_instances(clean)
    sd.save("/tmp/sd_gpu_model", overwrite=True)
    sd_cpu = StarDist2D.load("/tmp/sd_gpu_model", device="cpu")
    (p_gpu, d_gpu), (p_cpu, d_cpu) = sd.predict(clean), sd_cpu.predict(clean)
    err_p = float(np.abs(p_gpu - p_cpu).max())
    err_d = float(np.abs(d_gpu - d_cpu).max() / (np.abs(d_cpu).max() + 1e-12))
    check(err_p < 1e-3 and err_d < 1e-3, f"StarDist: GPU and CPU maps of the same weights agree "
          f"(prob max diff {err_p:.1e}, dist rel. max diff {err_d:.1e})")
    lab_cpu, _ = sd_cpu.predict_instances(clean)
    agree = matching(lab_cpu, lab_gpu, thresh=0.5).f1
    print(f"StarDist: GPU vs CPU instances F1@0.5 = {agree:.3f}")
    f1 = matching(labels, lab_gpu, thresh=0.5).f1
    check(f1 > 0.8, f"StarDist: {sd_steps} GPU steps reach F1@0.5 = {f1:.3f} on synthetic nuclei")
    t0 = time.perf_counter()
    for _ in range(5):
        sd.predict_instances(clean)
    print(f"StarDist train s/step (GPU, incl. validation): {t_sd / sd_steps:.4f}; "
          f"predict 256x256: {(time.perf_counter() - t0) / 5:.3f} s")
    print(f"\n{'all checks passed' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
