#!/usr/bin/env python
"""Benchmark: loading the original StarDist / n2v models in ij-bridge vs the original packages.

For every format ij-bridge reads, the same model is loaded and run on one
1024 × 1024 image twice: by ij-bridge (this venv, torch, no TensorFlow) and by
the original package in its own environment (TensorFlow 2.15; the venvs that
``scripts/make_reference_models.py`` builds, ``/work/venvs/stardist-tf`` and
``/work/venvs/n2v-tf``). Each measurement is a fresh process; the median of
``--repeats`` runs, interleaved (ij-bridge, original, ij-bridge, ...), is printed. Columns:

* ``import``: importing the package (ij-bridge + torch; stardist/n2v + TensorFlow);
* ``load``: from the model path to a model ready to predict (the original
  cannot read a zip: its time includes unzipping it; a TF SavedModel is loaded
  with ``tf.saved_model.load``, as the Fiji plugin's TensorFlow does);
* ``1st predict``: the first prediction on the 1024 × 1024 image (network maps;
  TensorFlow builds its graph here), ``2nd predict`` the next one, wall clock and
  CPU seconds of the process (all threads; less sensitive to other load);
* StarDist only: ``instances``: ``predict_instances`` after that (NMS included).

Models: by default models of the published models' size, built once by the
original packages in their venvs and cached in ``.bench/import_models``: a
StarDist 2D with the configuration of ``2D_versatile_fluo`` (U-Net depth 3, 32
filters, 32 rays, grid 2; trained for 200 steps on synthetic nuclei, so that the
objects, and with them the NMS time, are plausible) and
an n2v model with n2v's default configuration (depth 2, 32 filters, batch
norm; 2 training steps). ``--fixtures`` uses the small reference models of
``tests/fixtures/reference`` instead.

The load average and the thread settings of both sides are printed: torch and
TensorFlow get the same number of threads (``--threads``, default 2).

Usage::

    .venv/bin/python scripts/bench_import.py                 # published-size models, 3 repeats
    .venv/bin/python scripts/bench_import.py --fixtures --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
CACHE = ROOT / ".bench" / "import_models"

# ------------------------------------------------------------------------ the workers
# Each runs in a fresh process and prints one JSON line. Argument: a JSON object with
# family, format, path, image, threads.

_COMMON = r"""
import json, os, sys, time
a = json.loads(sys.argv[1])
n = int(a["threads"])
for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[k] = str(n)
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
res = {}
def clock():
    return time.perf_counter()
"""

WORKER_OURS = _COMMON + r"""
import warnings
warnings.simplefilter("ignore")
t = clock()
import numpy as np
import torch
from ij_bridge.stardist import StarDist2D
from ij_bridge.n2v import N2V
res["import"] = clock() - t
torch.set_num_threads(n)
res["threads"] = f"torch {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"
x = np.load(a["image"])
t = clock()
m = (StarDist2D if a["family"] == "stardist" else N2V).load(a["path"], device="cpu")
res["load"] = clock() - t
if a.get("thresholds"):  # a SavedModel carries none: the model folder's, as Fiji would be given
    m.thresholds = dict(a["thresholds"])
for k in ("1st predict", "2nd predict"):
    t, c = clock(), time.process_time()
    if a["family"] == "stardist":
        m.predict(x, normalize=False)
    else:
        m.predict(x, axes="YX")
    res[k] = clock() - t
    res[k + " CPU"] = time.process_time() - c
if a["family"] == "stardist":
    t = clock()
    lbl, det = m.predict_instances(x, normalize=False)
    res["instances"] = clock() - t
    res["objects"] = int(len(det["prob"]))
print(json.dumps(res))
"""

WORKER_ORIGINAL = _COMMON + r"""
import tempfile, zipfile
from pathlib import Path
t = clock()
import numpy as np
import tensorflow as tf
if a["family"] == "stardist":
    from stardist.models import StarDist2D
else:
    from n2v.models import N2V
res["import"] = clock() - t
tf.config.threading.set_intra_op_parallelism_threads(n)
tf.config.threading.set_inter_op_parallelism_threads(n)
res["threads"] = (f"TF {tf.config.threading.get_intra_op_parallelism_threads()} intra-op, "
                  f"{tf.config.threading.get_inter_op_parallelism_threads()} inter-op")
x = np.load(a["image"])
p = Path(a["path"])
tmp = tempfile.mkdtemp()
t = clock()
if p.suffix == ".zip":  # the original reads folders only: unzip first (counted)
    with zipfile.ZipFile(p) as zf:
        zf.extractall(tmp)
    inner = [q for q in Path(tmp).iterdir() if not q.name.startswith("__MACOSX")]
    p = inner[0] if len(inner) == 1 and inner[0].is_dir() else Path(tmp)
if a["format"] in ("savedmodel", "tf_model"):
    obj = tf.saved_model.load(str(p))
    fn = obj.signatures["serving_default"]
    key = list(fn.structured_input_signature[1].keys())[0]
    def run(img):
        y = fn(**{key: tf.constant(img[None, ..., None].astype(np.float32))})
        return [v.numpy() for v in y.values()]
elif a["family"] == "stardist":
    m = StarDist2D(None, name=p.name, basedir=str(p.parent))
    run = lambda img: m.predict(img)
else:
    m = N2V(None, name=p.name, basedir=str(p.parent))
    run = lambda img: m.predict(img, axes="YX")
res["load"] = clock() - t
if a["family"] == "n2v" and a["format"] == "tf_model":
    cfg = json.loads((Path(a["path"]).parent / "config.json").read_text())
    x = ((x - float(cfg["means"][0])) / float(cfg["stds"][0])).astype(np.float32)
for k in ("1st predict", "2nd predict"):
    t, c = clock(), time.process_time()
    run(x)
    res[k] = clock() - t
    res[k + " CPU"] = time.process_time() - c
if a["family"] == "stardist" and a["format"] != "savedmodel":
    t = clock()
    lbl, det = m.predict_instances(x)
    res["instances"] = clock() - t
    res["objects"] = int(len(det["prob"]))
print(json.dumps(res))
"""

# --------------------------------------------------------------- building the models

_BUILD_STARDIST = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"; os.environ["CUDA_VISIBLE_DEVICES"] = ""
import numpy as np
from stardist.models import Config2D, StarDist2D
out, data = sys.argv[1], np.load(sys.argv[2])
X, Y = list(data["X"]), list(data["Y"])
# 2D_versatile_fluo's configuration; a short training so that the objects are plausible
cfg = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, train_patch_size=(128, 128), train_batch_size=4,
               train_epochs=1, train_reduce_lr=None, train_tensorboard=False)
m = StarDist2D(cfg, name="versatile_size", basedir=out)
m.train(X[:-1], Y[:-1], validation_data=(X[-1:], Y[-1:]), epochs=4, steps_per_epoch=50, seed=0)
m = StarDist2D(None, name="versatile_size", basedir=out)
with open(os.path.join(out, "versatile_size", "thresholds.json"), "w") as f:
    json.dump({"prob": 0.479071, "nms": 0.3}, f)   # 2D_versatile_fluo's thresholds
m.export_TF(fname=os.path.join(out, "versatile_size", "TF_SavedModel.zip"))
"""

_BUILD_N2V = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"; os.environ["CUDA_VISIBLE_DEVICES"] = ""
import numpy as np
from n2v.models import N2V, N2VConfig
out = sys.argv[1]
rng = np.random.default_rng(0)
X = (rng.normal(100, 10, (8, 64, 64, 1))).astype(np.float32)
cfg = N2VConfig(X, n2v_patch_shape=(64, 64), train_batch_size=4, train_epochs=1,
                train_steps_per_epoch=2, train_tensorboard=False)   # n2v's defaults otherwise
m = N2V(cfg, "default_size", basedir=out)
m.train(X[:6], X[6:])
m = N2V(None, "default_size", basedir=out)
try:
    m.export_TF(name="default_size", description="bench", authors=["ij-bridge"], test_img=X[0, ..., 0],
                axes="YX", patch_shape=(64, 64))
except Exception as exc:  # the bioimage.io packaging after tf_model.zip needs an old bioimageio.core
    print("export_TF packaging:", type(exc).__name__, file=sys.stderr)
"""


def _zip_folder(folder: Path, dest: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n in names:
            zf.write(folder / n, f"{folder.name}/{n}")
    return dest


def build_models(args) -> tuple[dict[str, dict[str, Path]], Path]:
    """Paths of each family's formats ({"stardist": {"folder": ..., "zip": ..., ...}, ...}) and the work folder."""
    if args.fixtures:
        sd = FIXTURES / "stardist" / "2d_grid2"
        nv = FIXTURES / "n2v" / "n2v_2d"
        work = Path(tempfile.mkdtemp(prefix="bench_import_"))
    else:
        work = CACHE
        sd, nv = work / "versatile_size", work / "default_size"
        work.mkdir(parents=True, exist_ok=True)
        if not (sd / "TF_SavedModel.zip").is_file():
            print("building the StarDist model (original package) ...", file=sys.stderr)
            from ij_bridge.stardist.model import normalize_percentiles
            from ij_bridge.synthetic import synthetic_nuclei

            pairs = [synthetic_nuclei((256, 256), n_objects=40, seed=100 + i) for i in range(8)]
            np.savez(work / "train.npz", X=np.stack([normalize_percentiles(x, 1, 99.8) for x, _ in pairs]),
                     Y=np.stack([y for _, y in pairs]).astype(np.uint16))
            subprocess.run([str(args.stardist_python), "-c", _BUILD_STARDIST, str(work), str(work / "train.npz")],
                           check=True, stdout=subprocess.DEVNULL)
        if not (nv / "tf_model.zip").is_file():
            print("building the n2v model (original package) ...", file=sys.stderr)
            subprocess.run([str(args.n2v_python), "-c", _BUILD_N2V, str(work)], check=True, stdout=subprocess.DEVNULL)
    zips = work / "zips"
    zips.mkdir(exist_ok=True)
    sd_files = ["config.json", "weights_best.h5"] + (["thresholds.json"] if (sd / "thresholds.json").is_file() else [])
    out = {
        "stardist": {"folder": sd, "zip": _zip_folder(sd, zips / f"{sd.name}.zip", sd_files),
                     "savedmodel": sd / "TF_SavedModel.zip"},
        "n2v": {"folder": nv, "zip": _zip_folder(nv, zips / f"{nv.name}.zip", ["config.json", "weights_best.h5"]),
                "tf_model": nv / "tf_model.zip"},
    }
    # ij-bridge's own format, converted once by `ij-bridge ... import`
    for fam in ("stardist", "n2v"):
        own = zips / f"{fam}_ij_bridge.zip"
        if own.exists():
            own.unlink()
        subprocess.run([sys.executable, "-m", "ij_bridge.cli", fam, "import", str(out[fam]["folder"]),
                        "--model", str(own)], check=True, stdout=subprocess.DEVNULL)
        out[fam]["ij-bridge"] = own
    for fam, d in out.items():
        for fmt, p in d.items():
            if not p.exists():
                raise SystemExit(f"missing {fam} {fmt} model: {p}")
    return out, work


def make_image(size: int, work: Path) -> dict[str, Path]:
    """A normalised synthetic nuclei image (StarDist) and a noisy one (N2V), ``size`` × ``size``."""
    from ij_bridge.stardist.model import normalize_percentiles
    from ij_bridge.synthetic import synthetic_nuclei

    x, _ = synthetic_nuclei((size, size), n_objects=int(40 * (size / 256) ** 2), seed=0)
    sd = normalize_percentiles(x, 1, 99.8).astype(np.float32)
    rng = np.random.default_rng(0)
    noisy = (np.clip(x, 0, None) * 200 + 100 + rng.normal(0, 10, x.shape)).astype(np.float32)
    work.mkdir(parents=True, exist_ok=True)
    paths = {"stardist": work / f"stardist_{size}.npy", "n2v": work / f"n2v_{size}.npy"}
    np.save(paths["stardist"], sd)
    np.save(paths["n2v"], noisy)
    return paths


def run_worker(python: Path, code: str, job: dict, env: dict) -> dict:
    p = subprocess.run([str(python), "-c", code, json.dumps(job)], capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1])


def median_of(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    for k, v in ok[0].items():
        if isinstance(v, float):
            out[k] = statistics.median(r[k] for r in ok)
    return out


_LABELS = {
    ("stardist", "folder"): "StarDist model folder (config.json + weights_best.h5)",
    ("stardist", "zip"): "StarDist model folder, zipped",
    ("stardist", "savedmodel"): "TF SavedModel zip (Fiji plugin format)",
    ("stardist", "ij-bridge"): "ij-bridge model (after `stardist import`)",
    ("n2v", "folder"): "n2v model folder (config.json + weights_best.h5)",
    ("n2v", "zip"): "n2v model folder, zipped",
    ("n2v", "tf_model"): "n2v tf_model.zip (TF SavedModel)",
    ("n2v", "ij-bridge"): "ij-bridge model (after `n2v import`)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="image side (1024)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (3)")
    ap.add_argument("--threads", type=int, default=2, help="threads for torch and TensorFlow (2)")
    ap.add_argument("--fixtures", action="store_true", help="the small reference models instead")
    ap.add_argument("--stardist-venv", type=Path, default=Path(os.environ.get(
        "IJ_BRIDGE_STARDIST_VENV", "/work/venvs/stardist-tf")))
    ap.add_argument("--n2v-venv", type=Path, default=Path(os.environ.get("IJ_BRIDGE_N2V_VENV", "/work/venvs/n2v-tf")))
    ap.add_argument("--only", choices=["stardist", "n2v"], help="one family only")
    ap.add_argument("--build-only", action="store_true", help="build the cached models and stop")
    args = ap.parse_args()
    args.stardist_python = args.stardist_venv / "bin" / "python"
    args.n2v_python = args.n2v_venv / "bin" / "python"
    for py, what in ((args.stardist_python, "stardist"), (args.n2v_python, "n2v")):
        if not py.exists():
            raise SystemExit(f"no Python at {py}: build the original {what} environment first "
                             "(python3 scripts/make_reference_models.py makes it) or pass --{what}-venv")

    load0 = os.getloadavg()
    models, work = build_models(args)
    if args.build_only:
        print("\n".join(f"{fam} {fmt}: {p}" for fam, d in models.items() for fmt, p in d.items()))
        return 0
    images = make_image(args.size, ROOT / ".bench" / "import_images")
    env = dict(os.environ)
    rows = []
    for fam, fmts in models.items():
        if args.only and fam != args.only:
            continue
        orig_py = args.stardist_python if fam == "stardist" else args.n2v_python
        for fmt, path in fmts.items():
            job = {"family": fam, "format": fmt, "path": str(path), "image": str(images[fam]),
                   "threads": args.threads}
            th = fmts["folder"] / "thresholds.json"
            if fmt == "savedmodel" and th.is_file():
                job["thresholds"] = json.loads(th.read_text())
            # interleaved (ours, original, ours, ...) so that a change of the machine's load hits both
            runs_ours, runs_orig = [], []
            for _ in range(args.repeats):
                runs_ours.append(run_worker(Path(sys.executable), WORKER_OURS, job, env))
                if fmt != "ij-bridge":
                    runs_orig.append(run_worker(orig_py, WORKER_ORIGINAL, job, env))
            ours = median_of(runs_ours)
            orig = median_of(runs_orig) if runs_orig else None
            rows.append((fam, fmt, ours, orig))
            print(f"{fam} {fmt}: ours {ours} | original {orig}", file=sys.stderr)
    load1 = os.getloadavg()

    def f(r, k):
        return "—" if r is None or k not in r else (f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]))

    def ratio(a, b, k):
        if a is None or b is None or k not in a or k not in b or not b[k]:
            return "—"
        return f"{a[k] / b[k]:.2f}"

    print(f"\n{args.size} × {args.size} image, median of {args.repeats} interleaved fresh process(es) per cell; "
          f"{'reference fixtures' if args.fixtures else 'published-size models'}; seconds")
    print(f"load average before {' '.join(f'{v:.2f}' for v in load0)}, after {' '.join(f'{v:.2f}' for v in load1)}; "
          f"{os.cpu_count()} CPUs")
    thr = {"ours": next((r[2].get("threads") for r in rows if r[2].get("threads")), "?"),
           "original": next((r[3].get("threads") for r in rows if r[3] and r[3].get("threads")), "?")}
    print(f"threads: ij-bridge {thr['ours']}; original {thr['original']}; OMP/MKL_NUM_THREADS={args.threads}\n")
    keys = ["import", "load", "1st predict", "2nd predict", "2nd predict CPU", "instances"]
    print("| format | side | " + " | ".join(keys) + " | objects |")
    print("|---|---|" + "---|" * (len(keys) + 1))
    for fam, fmt, ours, orig in rows:
        label = _LABELS[(fam, fmt)]
        for side, r in (("ij-bridge", ours), ("original", orig)):
            if r is None:
                continue
            if "error" in r:
                print(f"| {label} | {side} | failed: {r['error']} |" + " |" * len(keys))
                continue
            print(f"| {label} | {side} | " + " | ".join(f(r, k) for k in keys) + f" | {f(r, 'objects')} |")
    print("\nratios ij-bridge / original (below 1: ij-bridge faster)\n")
    print("| format | load | 1st predict | 2nd predict | 2nd predict CPU | instances |")
    print("|---|---|---|---|---|---|")
    for fam, fmt, ours, orig in rows:
        ref = orig
        if fmt == "ij-bridge":  # against the original loading its own folder
            ref = next(o for fa, fo, _, o in rows if fa == fam and fo == "folder")
        if ours is None or ref is None or "error" in ours or "error" in ref:
            continue
        print(f"| {_LABELS[(fam, fmt)]} | " + " | ".join(ratio(ours, ref, k) for k in keys[1:]) + " |")
    if args.fixtures:  # a temporary folder of zips
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
