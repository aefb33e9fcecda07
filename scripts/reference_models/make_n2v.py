#!/usr/bin/env python
"""Make the n2v (juglab) reference models that tests/test_import_n2v.py checks against.

The models are trained by the original package itself (n2v 0.3.3 with
csbdeep 0.7.4 on TensorFlow 2.15 / Keras 2) for a few steps on synthetic
noisy images, so that their batch-normalisation statistics are not the
initial ones. For each model the script writes, under
``tests/fixtures/reference/n2v/<name>/``:

* ``config.json`` and ``weights_best.h5``: the model folder as n2v writes it;
* ``tf_model.zip`` (not for ``n2v_3d``, to stay small): the TF SavedModel
  written by n2v's ``export_TF`` (its bioimage.io packaging step needs the old
  ``bioimageio.core.build_spec`` API, which current bioimageio.core no longer
  has; the SavedModel zip is written before that step, so it is kept and the
  rest of the export is dropped). n2v writes the zip uncompressed; the fixture
  holds the same members, byte for byte, deflated;
* ``graph_savedmodel.zip`` (``n2v_2d`` only): the graph-mode SavedModel of
  CSBDeep's ``export_SavedModel`` (older n2v versions and the Fiji plugins use it);
* ``reference.npz``: ``input`` (a small noisy image), ``axes`` and ``output``,
  the original's own ``N2V.predict`` of it after reloading the model from disk;
  ``input_odd``/``output_odd`` the same for a size that is no multiple of
  ``2**depth`` (n2v pads it before the network).

``n2v_2d.zip`` is the zip of the ``n2v_2d`` folder (one top-level folder inside).

Models: ``n2v_2d`` (N2V, 5x5 kernels, batch norm), ``n2v2_2d`` (N2V2:
blur-pool, no top skip, median manipulator, depth 3), ``n2v_3d`` (ZYX,
residual), ``n2v_2d_2ch`` (2 channels, one U-Net per channel, n2v's default)
and ``n2v_2d_joint`` (2 channels, one shared U-Net, no batch norm).

The environment is its own throwaway venv (default ``/work/venvs/n2v-tf``):
n2v pulls numpy 2 and an older csbdeep than stardist, so it cannot share one.
The script creates it when missing and re-runs itself inside it.

Usage::

    python scripts/reference_models/make_n2v.py [--venv DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "reference" / "n2v"
VENV = Path(os.environ.get("IJ_BRIDGE_N2V_VENV", "/work/venvs/n2v-tf"))
# numpy<2 for TensorFlow 2.15; pandas<2.3 as n2v's old csbdeep needs
REQUIREMENTS = ["tensorflow-cpu==2.15.1", "numpy<2", "n2v==0.3.3", "pandas<2.3"]


def ensure_venv(venv: Path) -> Path:
    """Create ``venv`` with the pinned requirements unless it is already there."""
    py = venv / "bin" / "python"
    stamp = venv / ".ij-bridge-installed"
    if not stamp.exists():
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        stamp.write_text("\n".join(REQUIREMENTS) + "\n")
    return py


def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


# ----------------------------------------------------------------------------- inside the venv
def noisy_images(rng, shape, n_channels=1):
    """Smooth random blobs plus Gaussian noise, ``shape`` spatial, channels last."""
    import numpy as np
    from scipy import ndimage

    out = []
    for c in range(n_channels):
        base = ndimage.gaussian_filter(rng.random(shape), sigma=3.0)
        base = (base - base.min()) / (np.ptp(base) + 1e-9)
        img = 100.0 + 400.0 * base * (1.0 + 0.5 * c) + rng.normal(0, 40.0, shape)
        out.append(img.astype(np.float32))
    return np.stack(out, axis=-1)


MODELS = {
    "n2v_2d": dict(shape=(32, 32), test=(48, 48), channels=1, graph_export=True,
                   cfg=dict(unet_kern_size=5, unet_n_first=4, unet_n_depth=2)),
    "n2v2_2d": dict(shape=(32, 32), test=(48, 48), channels=1,
                    cfg=dict(unet_kern_size=3, unet_n_first=4, unet_n_depth=3, blurpool=True,
                             skip_skipone=True, n2v_manipulator="median", unet_residual=False)),
    "n2v_3d": dict(shape=(16, 16, 16), test=(8, 24, 24), channels=1, tf=False,
                   cfg=dict(unet_kern_size=3, unet_n_first=4, unet_n_depth=2, unet_residual=True)),
    "n2v_2d_2ch": dict(shape=(32, 32), test=(48, 48), channels=2,
                       cfg=dict(unet_kern_size=3, unet_n_first=4, unet_n_depth=2)),
    "n2v_2d_joint": dict(shape=(32, 32), test=(48, 48), channels=2,
                         cfg=dict(unet_kern_size=3, unet_n_first=4, unet_n_depth=2,
                                  single_net_per_channel=False, batch_norm=False)),
}


def make_one(name: str, spec: dict, out: Path, work: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from n2v.models import N2V, N2VConfig

    rng = np.random.default_rng(sorted(MODELS).index(name))
    tf.random.set_seed(0)
    nd = len(spec["shape"])
    n_ch = spec["channels"]
    big = tuple(2 * s for s in spec["shape"])
    X = []
    for _ in range(6):
        img = noisy_images(rng, big, n_ch)
        for idx in np.ndindex(*(2,) * nd):
            sl = tuple(slice(i * s, (i + 1) * s) for i, s in zip(idx, spec["shape"]))
            X.append(img[sl])
    X = np.stack(X)  # S, (Z,) Y, X, C
    X_val = X[-4:]
    X = X[:-4]
    cfg = N2VConfig(X, n2v_patch_shape=spec["shape"], train_batch_size=4, train_epochs=3,
                    train_steps_per_epoch=8, train_tensorboard=False, train_learning_rate=4e-3,
                    **spec["cfg"])
    model = N2V(cfg, name, basedir=str(work))
    model.train(X, X_val)
    # reload from disk as a user would; n2v picks weights_best.h5
    model = N2V(None, name, basedir=str(work))
    test = noisy_images(np.random.default_rng(1234), spec["test"], n_ch)
    axes = ("ZYX" if nd == 3 else "YX") + ("C" if n_ch > 1 else "")
    inp = test if n_ch > 1 else test[..., 0]
    pred = model.predict(inp, axes=axes)
    # a size the network cannot take as it is: n2v pads (csbdeep's PadAndCropResizer)
    odd_shape = tuple(t - 3 - 2 * k for k, t in enumerate(spec["test"]))
    odd = noisy_images(np.random.default_rng(99), odd_shape, n_ch)
    odd = odd if n_ch > 1 else odd[..., 0]
    pred_odd = model.predict(odd, axes=axes)
    # TF SavedModel export (the bioimage.io packaging after it needs an old bioimageio.core)
    try:
        model.export_TF(name=name, description="ij-bridge reference fixture", authors=["ij-bridge"],
                        test_img=inp, axes=axes, patch_shape=spec["shape"])
    except (ImportError, ModuleNotFoundError) as exc:
        print(f"{name}: bioimage.io packaging skipped ({exc}); tf_model.zip kept")
    src = work / name
    if spec.get("graph_export"):
        # the graph-mode SavedModel of CSBDeep's export_SavedModel (older n2v, the Fiji plugins)
        from csbdeep.utils.tf import export_SavedModel

        export_SavedModel(model.keras_model, str(src / "graph_savedmodel.zip"))
    dst = out / name
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in ("config.json", "weights_best.h5"):
        shutil.copy2(src / f, dst / f)
    zips = (["tf_model.zip"] if spec.get("tf", True) else []) + (
        ["graph_savedmodel.zip"] if spec.get("graph_export") else [])
    for f in zips:
        # stored uncompressed by n2v/csbdeep; the same members, deflated, keep the fixtures small
        with zipfile.ZipFile(src / f) as zin, \
                zipfile.ZipFile(dst / f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in zin.infolist():
                zout.writestr(info, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    np.savez_compressed(dst / "reference.npz", input=inp.astype(np.float32), axes=np.array(axes),
                        output=pred.astype(np.float32), input_odd=odd.astype(np.float32),
                        output_odd=pred_odd.astype(np.float32))
    print(f"{name}: output range {float(pred.min()):.3f}..{float(pred.max()):.3f}")


def make_all(out: Path) -> None:
    import tempfile

    import csbdeep
    import n2v
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in MODELS.items():
            make_one(name, spec, out, Path(tmp))
    # the zip of a model folder, with its top-level folder inside
    zpath = out / "n2v_2d.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in ("config.json", "weights_best.h5"):
            zf.write(out / "n2v_2d" / f, arcname=f"n2v_2d/{f}")
    (out / "VERSIONS.json").write_text(json.dumps(
        {"n2v": n2v.__version__, "csbdeep": csbdeep.__version__, "tensorflow": tf.__version__,
         "script": "scripts/reference_models/make_n2v.py"}, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=VENV, help=f"throwaway venv ({VENV})")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output folder ({OUT})")
    args = ap.parse_args(argv)
    if not in_venv(args.venv):
        py = ensure_venv(args.venv)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        return subprocess.run([str(py), __file__, "--venv", str(args.venv), "--out", str(args.out)],
                              env=env).returncode
    make_all(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
