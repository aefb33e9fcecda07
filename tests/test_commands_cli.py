"""Every bundled command, and the macros in macros/, run by real macros through ``ij-bridge macro``.

One process per macro (a JVM and a virtual display each), so the macros are few
and each exercises several commands; details are checked in test_commands.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytestmark = pytest.mark.imagej

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from ij_bridge.cli import main; sys.exit(main(sys.argv[1:]))"
PIXEL = 0.65


def ij_bridge_macro(macro: Path, arg: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # as on a server
    env.setdefault("IJ_BRIDGE_THREADS", "2")
    return subprocess.run([sys.executable, "-c", CLI, "macro", str(macro), "--arg", arg],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def write_calibrated(path: Path, arr: np.ndarray, dims=("y", "x")) -> None:
    from ij_bridge.io import imwrite

    coords = {d: np.arange(arr.shape[i]) * PIXEL for i, d in enumerate(dims) if d in "zyx"}
    da = xr.DataArray(arr, dims=dims, coords=coords, attrs={"units": {d: "µm" for d in dims if d in "zyx"}})
    imwrite(path, da, overwrite=True)


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    import tifffile

    d = tmp_path_factory.mktemp("cli_data")
    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")[384:512, :128]
    mask = tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif")[384:512, :128]
    write_calibrated(d / "nuclei.tif", img)
    write_calibrated(d / "nuclei_truth.tif", mask)
    n_true = len(np.unique(mask)) - 1
    # the crop cuts some nuclei into slivers (< 100 px) that are not expected to be found
    n_whole = int(np.count_nonzero(np.bincount(mask.ravel())[1:] >= 100))
    return d, n_true, n_whole


def check_calibration(path: Path) -> None:
    from ij_bridge.io import imread

    da = imread(path)
    assert da.attrs["units"]["x"] == "µm"
    assert float(da.x[1] - da.x[0]) == pytest.approx(PIXEL, rel=1e-6)


@pytest.mark.slow
def test_workflow_macro_denoise_segment_measure(data, tmp_path):
    d, n_true, n_whole = data
    out = tmp_path / "results"
    r = ij_bridge_macro(REPO / "macros" / "denoise_segment_measure.ijm",
                        f"input=[{d / 'nuclei.tif'}] output=[{out}] epochs=1 steps=2 batch=2 patch=32")
    assert r.returncode == 0, r.stderr
    for name in ("nuclei-denoised.tif", "nuclei-labels.tif", "nuclei-rois.zip", "nuclei-measurements.csv"):
        assert (out / name).is_file(), name
    assert (out / "nuclei-n2v").is_dir()
    check_calibration(out / "nuclei-denoised.tif")
    check_calibration(out / "nuclei-labels.tif")
    table = pd.read_csv(out / "nuclei-measurements.csv")
    count = int(r.stdout.split("objects: ")[-1].split()[0])
    assert count == len(table) > 0
    assert {"Label", "Area", "Mean", "X", "Perim.", "Circ."} <= set(table.columns)
    # a barely trained N2V (2 steps) still leaves nuclei to find; the count is in the truth's range
    assert 0.5 * n_whole <= count <= 2 * n_whole
    import roifile

    assert len(roifile.roiread(out / "nuclei-rois.zip")) == count


def test_qc_macro_against_ground_truth(data, tmp_path):
    d, n_true, n_whole = data
    out = tmp_path / "qc"
    r = ij_bridge_macro(REPO / "macros" / "segmentation_qc.ijm",
                        f"image=[{d / 'nuclei.tif'}] truth=[{d / 'nuclei_truth.tif'}] output=[{out}] threshold=0.5")
    assert r.returncode == 0, r.stderr
    qc = pd.read_csv(out / "nuclei-qc.csv")
    assert qc.loc[0, "n_true"] == n_true
    assert qc.loc[0, "f1"] > 0.7  # the bundled model on nuclei like those it learnt from
    assert "F1 " in r.stdout and f"true objects: {n_true}" in r.stdout
    check_calibration(out / "nuclei-labels.tif")


ALL_COMMANDS = r"""
d = getArgument() + "/";
open(d + "nuclei.tif");
// N2V: train, predict with the saved model, and both in one
run("N2V Train (torch)", "training=nuclei.tif model=[" + d + "n2v] epochs=1 steps=1 batch=2 patch=32 radius=3 variant=N2V2 mode=2D");
selectImage("nuclei.tif");
run("N2V Predict (torch)", "model=[" + d + "n2v] tiles=2");
print("predicted: " + getTitle() + " " + bitDepth());
run("N2V Train + Predict (torch)", "training=nuclei.tif epochs=1 steps=1 batch=2 patch=32 variant=structN2V struct=vertical span=3");
print("train+predict: " + getTitle());
// StarDist: train a (tiny) 2D model, segment with it and with the bundled one
run("StarDist Train (torch)", "images=[" + d + "train/images] masks=[" + d + "train/masks] model=[" + d + "sd2d] epochs=1 steps=1 patch=64 rays=16");
print("trained: " + File.exists(d + "sd2d/config.json"));
run("StarDist 2D (torch)", "input=nuclei.tif model=[" + d + "sd2d] normalize probability=0.99 output=[Label Image]");
close();
run("StarDist 2D (torch)", "input=nuclei.tif normalize output=Both");
print("stardist: " + getTitle() + " " + roiManager("count"));
run("Labels to ROIs", "labels=nuclei-labels position=Automatic");
print("rois: " + roiManager("count"));
run("ROIs to Labels", "image=nuclei.tif");
print("roi labels: " + getTitle());
open(d + "nuclei_truth.tif");
run("Segmentation QC", "prediction=nuclei-labels truth=nuclei_truth.tif threshold=0.5");
print("f1: " + getResult("f1", 0));
run("Measure Labels", "labels=nuclei-labels intensity=nuclei.tif");
print("measured: " + nResults);
saveAs("Results", d + "measured.csv");
// StarDist 3D on a z-stack
open(d + "stack.tif");
run("StarDist 3D (torch)", "model=[" + d + "sd3d] normalize probability=0.9 output=Both");
print("3d: " + getTitle() + " " + nSlices);
saveAs("Tiff", d + "stack-labels.tif");
"""


@pytest.mark.slow
def test_every_command_in_one_macro(data, tmp_path):
    """Each command of issue 5 once, through the CLI, with tiny training runs."""
    import shutil

    from ij_bridge.stardist import StarDist3D, StarDistConfig

    d, n_true, n_whole = data
    work = tmp_path / "all"
    work.mkdir()
    for name in ("nuclei.tif", "nuclei_truth.tif"):
        shutil.copy(d / name, work / name)
    (work / "train" / "images").mkdir(parents=True)
    (work / "train" / "masks").mkdir(parents=True)
    shutil.copy(d / "nuclei.tif", work / "train" / "images" / "a.tif")
    shutil.copy(d / "nuclei_truth.tif", work / "train" / "masks" / "a.tif")
    stack = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    write_calibrated(work / "stack.tif", stack, dims=("z", "y", "x"))
    # an (untrained) 3D model: the command's plumbing is what is tested here
    StarDist3D(StarDistConfig(ndim=3, n_rays=16, unet_depth=2, unet_n_filters=8)).save(work / "sd3d")
    macro = tmp_path / "all.ijm"
    macro.write_text(ALL_COMMANDS)
    r = ij_bridge_macro(macro, str(work))
    assert r.returncode == 0, r.stdout + r.stderr
    out = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line and not line.startswith(("N2V", "StarDist", "Labels", "ROIs", "Measure", "Segmentation")))
    assert out["predicted"] == "nuclei-denoised 32"
    assert out["train+predict"].startswith("nuclei-denoised")
    assert out["trained"] == "1"
    title, count = out["stardist"].split()
    assert title == "nuclei-labels" and abs(int(count) - n_whole) <= max(2, 0.2 * n_whole)
    assert out["rois"] == count
    assert out["roi labels"] == "nuclei-labels-2"  # a second label image, never overwriting the first
    assert float(out["f1"]) > 0.7
    assert out["measured"] == count
    assert len(pd.read_csv(work / "measured.csv")) == int(count)
    assert out["3d"] == "stack-labels 8"
    check_calibration(work / "stack-labels.tif")
    assert (work / "n2v").is_dir()
