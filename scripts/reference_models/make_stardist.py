"""Reference StarDist models made by the original package (stardist 0.9.2, TensorFlow 2.15).

Builds its own throwaway environments (``/work/venvs/stardist-tf``: TensorFlow
2.15 with Keras 2; ``/work/venvs/stardist-k3``: TensorFlow 2.21 with Keras 3),
trains small models on synthetic blobs for a few hundred steps, and writes into
``tests/fixtures/reference/stardist/<name>/``:

* the original's model folder: ``config.json``, ``weights_best.h5``,
  ``thresholds.json`` (``weights_last.h5`` is left out, to keep the files small);
* ``TF_SavedModel.zip`` (2D models): the model's own ``export_TF()`` (the Fiji plugin's format);
* ``2d_keras3`` (made under Keras 3): ``weights_best.h5`` as CSBDeep writes it there, and
  Keras 3's own ``keras3_native.weights.h5`` and ``keras3_model.keras`` (refused by ij-bridge);
* ``reference.npz``: a small fixed, already normalised image ``x`` (float16; the
  original predicted on exactly these values as float32) and the
  original's ``predict`` output on it (``prob`` in full; ``dist`` at the
  positions ``dist_index`` of the flattened grid, i.e. all positions with
  ``prob > 0.5`` and every 14th other one, to keep the files small) and the
  ``labels`` of its ``predict_instances`` (with the model's thresholds).

Run through the driver ``scripts/make_reference_models.py`` or directly
(``python3 scripts/reference_models/make_stardist.py``). The tests of
``tests/test_import_stardist.py`` read these files; they never need TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "reference" / "stardist"
REQUIREMENTS = ["tensorflow-cpu==2.15.1", "numpy<2", "stardist==0.9.2"]
# the same stardist under Keras 3 (TensorFlow 2.16+): CSBDeep then writes weights_best.h5 with
# Keras 3's legacy HDF5 writer; Keras 3's own .weights.h5 / .keras files are kept as bad inputs
REQUIREMENTS_KERAS3 = ["tensorflow-cpu==2.21.0", "stardist==0.9.2"]
SETS = {"tf2": (REQUIREMENTS, Path("/work/venvs/stardist-tf")),
        "keras3": (REQUIREMENTS_KERAS3, Path("/work/venvs/stardist-k3"))}


def ensure_venv(venv: Path, requirements: list[str] = REQUIREMENTS) -> Path:
    """Create ``venv`` with the pinned packages unless it already has them."""
    py = venv / "bin" / "python"
    stamp = venv / ".stardist-reference-ok"
    if not stamp.exists():
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True)
        subprocess.run([str(py), "-c", "import stardist, tensorflow"], check=True)
        stamp.write_text("\n".join(requirements) + "\n")
    return py


# ------------------------------------------------------------------ inside the venv

def _blobs_2d(rng, shape, n, rmin, rmax, channels=1):
    import numpy as np
    from skimage.draw import ellipse

    lbl = np.zeros(shape, np.uint16)
    k = 0
    for _ in range(n * 20):
        if k == n:
            break
        r = rng.uniform(rmin, rmax, 2)
        c = rng.uniform(rmax, np.array(shape) - rmax)
        rr, cc = ellipse(c[0], c[1], r[0], r[1], shape=shape, rotation=rng.uniform(0, np.pi))
        if lbl[rr, cc].any():
            continue
        k += 1
        lbl[rr, cc] = k
    fg = (lbl > 0).astype(np.float32)
    if channels == 1:
        img = 0.2 + 0.8 * fg + rng.normal(0, 0.15, shape)
        return img.astype(np.float32), lbl
    # H&E-like: pink background, purple nuclei
    bg = np.array([0.9, 0.7, 0.8])
    nuc = np.array([0.4, 0.2, 0.6])
    img = bg * (1 - fg[..., None]) + nuc * fg[..., None] + rng.normal(0, 0.08, shape + (3,))
    return img.astype(np.float32), lbl


def _blobs_3d(rng, shape, n, rmin, rmax, anisotropy=(1, 1, 1)):
    import numpy as np

    lbl = np.zeros(shape, np.uint16)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    a = np.asarray(anisotropy, float)
    k = 0
    for _ in range(n * 20):
        if k == n:
            break
        r = rng.uniform(rmin, rmax, 3) / a
        c = rng.uniform(r + 1, np.array(shape) - r - 1)
        m = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        if lbl[m].any():
            continue
        k += 1
        lbl[m] = k
    img = 0.2 + 0.8 * (lbl > 0) + rng.normal(0, 0.15, shape)
    return img.astype(np.float32), lbl


def _save_reference(model, x, out: Path):
    import numpy as np

    prob, dist = model.predict(x)
    labels, _ = model.predict_instances(x)
    flat = prob.reshape(-1)
    idx = np.flatnonzero((flat > 0.5) | (np.arange(flat.size) % 14 == 0)).astype(np.int32)
    dist_flat = dist.reshape(flat.size, -1)
    extra = {}
    if getattr(model.config, "rays_json", None):  # 3D: the rays (vertices and triangulation) used
        from stardist.rays3d import rays_from_json
        rays = rays_from_json(model.config.rays_json)
        extra = dict(rays_vertices=rays.vertices.astype(np.float32), rays_faces=rays.faces.astype(np.int32))
    np.savez_compressed(out / "reference.npz", x=x.astype(np.float16), prob=prob.astype(np.float32), **extra,
                        dist_index=idx, dist_values=dist_flat[idx].astype(np.float32),
                        dist_shape=np.asarray(dist.shape, np.int32),
                        labels=labels.astype(np.int32),
                        thresholds=np.asarray([model.thresholds.prob, model.thresholds.nms]))
    return int(labels.max())


def build_models(out: Path, only: list[str] | None, steps: int, which: str = "tf2") -> None:
    import numpy as np
    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import Rays_GoldenSpiral
    from stardist.models import Config2D, Config3D, StarDist2D, StarDist3D

    tf.keras.utils.set_random_seed(0)
    specs = {
        # name: (class, config kwargs, data kind)
        "2d_grid1": (StarDist2D, dict(n_rays=16, grid=(1, 1), unet_n_depth=2, unet_n_filter_base=8,
                                      unet_n_conv_per_depth=3, net_conv_after_unet=16, train_patch_size=(64, 64),
                                      train_batch_size=4, train_learning_rate=1e-3, _steps=800), "2d"),
        "2d_grid2": (StarDist2D, dict(n_rays=24, grid=(2, 2), unet_n_depth=3, unet_n_filter_base=8,
                                      net_conv_after_unet=0, train_patch_size=(64, 64), train_batch_size=4,
                                      _steps=600), "2d"),
        "2d_rgb_bn": (StarDist2D, dict(n_rays=16, grid=(2, 2), n_channel_in=3, unet_n_depth=2,
                                       unet_n_filter_base=8, unet_batch_norm=True,
                                       unet_kernel_size=(4, 4), net_conv_after_unet=16,
                                       train_patch_size=(64, 64), train_batch_size=4), "rgb"),
        "3d_resnet": (StarDist3D, dict(rays=Rays_GoldenSpiral(24, anisotropy=(2, 1, 1)),
                                       anisotropy=(2, 1, 1), grid=(1, 2, 2), backbone="resnet",
                                       resnet_n_blocks=2, resnet_n_filter_base=8,
                                       net_conv_after_resnet=16, train_patch_size=(16, 32, 32),
                                       train_batch_size=2), "3d_aniso"),
        "3d_unet": (StarDist3D, dict(rays=Rays_GoldenSpiral(24), grid=(1, 2, 2), backbone="unet",
                                     unet_n_depth=2, unet_n_filter_base=8, unet_pool=(1, 2, 2),
                                     net_conv_after_unet=16, train_patch_size=(16, 32, 32),
                                     train_batch_size=2), "3d"),
    }
    if which == "keras3":
        specs = {
            "2d_keras3": (StarDist2D, dict(n_rays=8, grid=(2, 2), unet_n_depth=2, unet_n_filter_base=4,
                                           unet_batch_norm=True, net_conv_after_unet=8,
                                           train_patch_size=(64, 64), train_batch_size=4,
                                           train_learning_rate=1e-3, _steps=400), "2d"),
        }
    for name, (klass, kw, kind) in specs.items():
        if only and name not in only:
            continue
        rng = np.random.default_rng(1)
        if kind == "2d":
            data = [_blobs_2d(rng, (128, 128), 25, 4, 8) for _ in range(6)]
            ref = _blobs_2d(np.random.default_rng(99), (96, 112), 20, 4, 8)
            axis = (0, 1)
        elif kind == "rgb":
            data = [_blobs_2d(rng, (128, 128), 25, 4, 8, channels=3) for _ in range(6)]
            ref = _blobs_2d(np.random.default_rng(99), (96, 112), 20, 4, 8, channels=3)
            axis = (0, 1)
        else:
            aniso = (2, 1, 1) if kind == "3d_aniso" else (1, 1, 1)
            data = [_blobs_3d(rng, (32, 64, 64), 25, 4, 7, aniso) for _ in range(4)]
            ref = _blobs_3d(np.random.default_rng(99), (24, 40, 48), 14, 4, 7, aniso)
            axis = (0, 1, 2)
        kw = dict(kw)
        n_steps = kw.pop("_steps", steps)  # the models that learn slowly get more steps
        X = [normalize(x, 1, 99.8, axis=axis) for x, _ in data]
        Y = [y for _, y in data]
        cfg = (Config2D if klass is StarDist2D else Config3D)(**kw, train_epochs=1,
                                                                train_reduce_lr=None,
                                                                train_tensorboard=False)
        mdir = out / name
        mdir.mkdir(parents=True, exist_ok=True)
        for f in mdir.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        model = klass(cfg, name=name, basedir=str(out))
        epochs = max(1, n_steps // 50)
        model.train(X[:-1], Y[:-1], validation_data=([X[-1]], [Y[-1]]), epochs=epochs,
                    steps_per_epoch=50, seed=0)
        # thresholds: the original's own optimisation on the held-out image
        model.optimize_thresholds([X[-1]], [Y[-1]], nms_threshs=[0.3, 0.4], iou_threshs=[0.5])
        # the reference input is stored as float16 (half the size); both sides predict on exactly it
        x = normalize(ref[0], 1, 99.8, axis=axis).astype(np.float16).astype(np.float32)
        n = _save_reference(model, x, mdir)
        if which == "keras3":
            # export_TF needs Keras 2. Keras 3's own formats (which ij-bridge refuses), from a
            # tiny untrained model of the same kind to keep the files small
            tiny = StarDist2D(Config2D(n_rays=4, grid=(1, 1), unet_n_depth=1, unet_n_filter_base=2,
                                       net_conv_after_unet=0), name=None, basedir=None)
            tiny.keras_model.save_weights(str(mdir / "keras3_native.weights.h5"))
            tiny.keras_model.save(str(mdir / "keras3_model.keras"))
        elif klass is StarDist2D:
            model.export_TF(fname=str(mdir / "TF_SavedModel.zip"))
        for junk in mdir.glob("weights_now.h5"):
            junk.unlink()
        (mdir / "weights_last.h5").unlink()  # size; the tests make their own second weights file
        (mdir / "made_by.json").write_text(json.dumps({
            "script": "scripts/reference_models/make_stardist.py", "packages": SETS[which][0],
            "train_steps": epochs * 50, "objects_in_reference": n,
            "reference_objects_true": int(ref[1].max())}, indent=1))
        print(f"{name}: {n} objects (true {int(ref[1].max())}); files: "
              f"{sorted(p.name for p in mdir.iterdir())}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS),
                    help="environments to use: tf2 (TF 2.15, Keras 2) and keras3 (TF 2.21)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", help="model names to (re)make")
    ap.add_argument("--steps", type=int, default=400,
                    help="training steps per model (400; some models set their own)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.inside:
        for which in args.sets:
            reqs, venv = SETS[which]
            py = ensure_venv(venv, reqs)
            cmd = [str(py), __file__, "--inside", "--sets", which, "--out", str(args.out),
                   "--steps", str(args.steps)]
            if args.only:
                cmd += ["--only", *args.only]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
            rc = subprocess.run(cmd, env=env).returncode
            if rc:
                return rc
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    build_models(args.out, args.only, args.steps, args.sets[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
