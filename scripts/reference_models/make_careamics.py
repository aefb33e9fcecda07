#!/usr/bin/env python
"""Make the CAREamics reference checkpoints that tests/test_import_n2v.py checks against.

CAREamics 0.3.5 trains tiny N2V models for a few steps on synthetic noisy
images and writes its own Lightning checkpoints; beside each the script saves
CAREamics' own prediction of a small image (made by CAREamics from the saved
file; the optimizer's state is dropped from the checkpoint to keep it small).
Output, under
``tests/fixtures/reference/careamics/<name>/``: ``<name>_last.ckpt`` and
``reference.npz`` (``input``, ``axes``, ``output``); for ``cam_n2v_2d`` also
CAREamics' bioimage.io export ``cam_n2v_2d.bioimage.io.zip`` (its
bioimage.io serialiser needs pydantic 2.11; 2.14 breaks it).

Models: ``cam_n2v_2d`` (1 channel, depth 2) and ``cam_n2v2_2ch`` (N2V2:
blur-pool and no top skip; 2 independent channels, i.e. grouped convolutions).

Environment: its own throwaway venv (default ``/work/venvs/careamics``) with
``careamics==0.3.5`` and the CPU build of torch. torchvision is imported by
CAREamics only for its LVAE models and by torchmetrics for image metrics;
where no torchvision wheel fits the installed torch (here the registry serves
CUDA builds only, which fail to load beside CPU torch), the script installs a
placeholder package that raises when anything in it is used, so an N2V
UNet never touches it.

Usage::

    python scripts/reference_models/make_careamics.py [--venv DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "reference" / "careamics"
VENV = Path(os.environ.get("IJ_BRIDGE_CAREAMICS_VENV", "/work/venvs/careamics"))
DEPS = ["bioimageio.core>=0.9,<=0.11", "lightning", "matplotlib", "microssim<=0.0.5", "numpy", "psutil",
        "pydantic==2.11.*", "pyyaml", "scikit-image", "tifffile", "torchmetrics<1.9", "typer",
        "zarr", "pillow<=13"]
_STUB = '''def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    def _missing(*a, **k):
        raise ImportError("torchvision placeholder (ij-bridge fixture venv): " + name)
    return _missing
'''


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    stamp = venv / ".ij-bridge-installed"
    if stamp.exists():
        return py
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    torch = os.environ.get("IJ_BRIDGE_TORCH", "torch")  # e.g. a local CPU wheel
    subprocess.run(pip + [torch, "careamics==0.3.5", "--no-deps"], check=True)
    subprocess.run(pip + DEPS, check=True)
    probe = subprocess.run([str(py), "-c", "import torchvision"], capture_output=True)
    if probe.returncode != 0:
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        tv = Path(site) / "torchvision"
        shutil.rmtree(tv, ignore_errors=True)
        for sub in ("models", "transforms"):
            (tv / sub).mkdir(parents=True)
            (tv / sub / "__init__.py").write_text(_STUB)
        (tv / "transforms" / "functional.py").write_text(_STUB)
        (tv / "__init__.py").write_text('__version__ = "0.0.0+placeholder"\n')
    stamp.write_text("careamics==0.3.5\n")
    return py


MODELS = {
    "cam_n2v_2d": dict(channels=1, n2v2=False, bmz=True),
    "cam_n2v2_2ch": dict(channels=2, n2v2=True),
}


def make_all(out: Path) -> None:
    import tempfile

    import numpy as np
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config
    from scipy import ndimage

    out.mkdir(parents=True, exist_ok=True)
    for k, (name, spec) in enumerate(MODELS.items()):
        rng = np.random.default_rng(k)
        n_ch = spec["channels"]
        chans = []
        for c in range(n_ch):
            base = ndimage.gaussian_filter(rng.random((128, 128)), 3.0)
            base = (base - base.min()) / np.ptp(base)
            chans.append(100 + 400 * base * (1 + 0.5 * c) + rng.normal(0, 40, base.shape))
        img = np.stack(chans).astype(np.float32) if n_ch > 1 else chans[0].astype(np.float32)
        axes = "CYX" if n_ch > 1 else "YX"
        cfg = create_advanced_n2v_config(
            name, "array", axes, [32, 32], 8, num_epochs=2, num_steps=6, n_channels=n_ch if n_ch > 1 else None,
            use_n2v2=spec["n2v2"], model_params={"depth": 2, "num_channels_init": 8}, num_workers=0,
            seed=k + 1)
        with tempfile.TemporaryDirectory() as tmp:
            cam = CAREamist(cfg, work_dir=tmp)
            val = img[..., :64, :64]
            cam.train(train_data=img, val_data=val)
            ckpts = sorted(Path(tmp).rglob("*_last.ckpt")) or sorted(Path(tmp).rglob("*.ckpt"))
            # the optimizer's state is two thirds of the file and not needed to predict: drop it
            import torch

            ck = torch.load(ckpts[0], map_location="cpu", weights_only=False)
            for key in ("optimizer_states", "lr_schedulers"):
                ck[key] = []
            torch.save(ck, ckpts[0])
            # reload from the file, as a user would
            cam = CAREamist(checkpoint_path=ckpts[0], work_dir=tmp)
            test = img[..., 64:112, 64:112].copy()
            pred, _ = cam.predict(test, axes=axes, tile_size=None)
            pred = np.asarray(pred[0]).reshape(test.shape)
            dst = out / name
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir(parents=True)
            shutil.copy2(ckpts[0], dst / f"{name}_last.ckpt")
            if spec.get("bmz"):
                cam.export_to_bmz(dst / f"{name}.bioimage.io.zip", name, test,
                                  authors=[{"name": "ij-bridge"}], general_description="ij-bridge fixture",
                                  data_description="synthetic noisy blobs")
        np.savez_compressed(dst / "reference.npz", input=test, axes=np.array(axes), output=pred.astype(np.float32))
        print(f"{name}: output range {float(pred.min()):.3f}..{float(pred.max()):.3f}")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=VENV)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if Path(sys.prefix).resolve() != args.venv.resolve():
        py = ensure_venv(args.venv)
        return subprocess.run([str(py), __file__, "--venv", str(args.venv), "--out", str(args.out)],
                              env=dict(os.environ, CUDA_VISIBLE_DEVICES="")).returncode
    make_all(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
