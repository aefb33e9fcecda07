"""The bundled commands, driven by real macros in this process's ImageJ (virtual display).

Each command also runs through ``ij-bridge macro`` in test_commands_cli.py; here
the details are checked: calibration, ROI names and positions, stacks, errors,
and that a recorded dialog run replays to the same result.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from conftest import fill_generic_dialog, image, show  # and the `imagej` fixture

from ij_bridge.commands import run_macro

pytestmark = pytest.mark.imagej

PIXEL = 0.5  # µm


@pytest.fixture(scope="module")
def crops(shared_data):
    """A 128 x 128 crop (rows the bundled model never saw) of the shared nuclei image and its annotation."""
    import tifffile

    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")[384:512, :128]
    mask = tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif")[384:512, :128]
    return img, mask


def calibrated(arr, title, dims=("y", "x"), t_step=None):
    coords = {d: np.arange(arr.shape[i]) * PIXEL for i, d in enumerate(dims) if d in "yx"}
    units = {"x": "µm", "y": "µm"}
    if t_step is not None:
        coords["t"] = np.arange(arr.shape[0]) * t_step
        units["t"] = "sec"
    return xr.DataArray(arr, dims=dims, coords=coords, attrs={"units": units, "title": title})


def pixels(title):
    from ij_bridge import from_imageplus

    return np.asarray(from_imageplus(image(title)).values)


def roi_manager():
    import jpype

    rm = jpype.JClass("ij.plugin.frame.RoiManager").getInstance()
    return [] if rm is None else list(rm.getRoisAsArray())


def ok(code):
    r = run_macro(code)
    assert r.ok, r.error
    return r


def test_stardist_2d_keeps_calibration_and_names_rois(imagej, crops):
    from ij_bridge import results_to_dataframe
    from ij_bridge.imagej.rois import rois_to_labels

    img, mask = crops
    show(calibrated(img, "nuclei"), "nuclei")
    ok('run("StarDist 2D (torch)", "input=nuclei normalize low=1 high=99.8 output=Both tiles=1 exclude=2");')
    labels = pixels("nuclei-labels")
    cal = image("nuclei-labels").getCalibration()
    assert (cal.pixelWidth, cal.pixelHeight, str(cal.getUnit())) == (PIXEL, PIXEL, "µm")
    assert image("nuclei-labels").getBitDepth() == 16
    n = int(labels.max())
    assert set(np.unique(labels)) == set(range(n + 1))
    n_true = len(np.unique(mask)) - 1
    # the crop cuts some nuclei into slivers (< 100 px) that are not expected to be found
    n_whole = int(np.count_nonzero(np.bincount(mask.ravel())[1:] >= 100))
    assert abs(n - n_whole) <= max(2, 0.2 * n_whole)
    rois = roi_manager()
    assert [str(r.getName()) for r in rois] == [f"label-{k:04d}" for k in range(1, n + 1)]
    assert all(r.getPosition() == 0 for r in rois)  # a 2D image: unpositioned
    # the ROIs are the model's polygons (as the Fiji plugin makes them), each carrying its label;
    # painted back they give the label image but where polygons overlap (docs/rois.md)
    assert [int(str(r.getProperty("label"))) for r in rois] == list(range(1, n + 1))
    assert all(int(r.getType()) == 2 for r in rois)  # Roi.POLYGON
    assert np.mean(rois_to_labels(rois, labels.shape) == labels) > 0.97
    # QC of the result against the annotation, through the command
    show(calibrated(mask, "truth"), "truth")
    ok('run("Segmentation QC", "prediction=nuclei-labels truth=truth threshold=0.5");')
    qc = results_to_dataframe()
    assert qc.loc[0, "n_true"] == n_true and qc.loc[0, "n_pred"] == n
    assert qc.loc[0, "f1"] > 0.7
    assert {"precision", "recall", "jaccard", "dice", "hausdorff_distance"} <= set(qc.columns)


def test_stardist_thresholds_and_border(imagej, crops):
    img, _ = crops
    show(img, "raw")
    counts = {}
    for key, options in {"auto": "", "strict": "probability=0.9", "keep_border": "exclude=0"}.items():
        ok(f'selectImage("raw"); run("StarDist 2D (torch)", "normalize output=[Label Image] {options}");'
           'rename("out"); ')
        counts[key] = int(pixels("out").max())
        ok('close("out");')
    assert counts["strict"] < counts["auto"] <= counts["keep_border"]


def test_stardist_2d_time_series_positions(imagej, crops):
    img, _ = crops
    series = np.stack([img, img[:, ::-1]])  # 2 frames, 2 s apart
    show(calibrated(series, "movie", dims=("t", "y", "x"), t_step=2.0), "movie")
    ok('run("StarDist 2D (torch)", "input=movie normalize output=Both position=Automatic");')
    lab_imp = image("movie-labels")
    assert (lab_imp.getNFrames(), lab_imp.getNSlices()) == (2, 1)
    assert lab_imp.getCalibration().frameInterval == 2.0
    labels = pixels("movie-labels")
    # each frame is segmented exactly as the same image alone
    show(img[:, ::-1].copy(), "mirror")
    ok('run("StarDist 2D (torch)", "input=mirror normalize output=[Label Image]");')
    np.testing.assert_array_equal(labels[1], pixels("mirror-labels"))
    ok('close("mirror*");')
    rois = roi_manager()
    per_frame = [int(labels[t].max()) for t in range(2)]
    assert len(rois) == sum(per_frame)
    positions = [int(r.getPosition()) for r in rois]
    assert positions == [1] * per_frame[0] + [2] * per_frame[1]
    assert str(rois[-1].getName()) == f"label-{per_frame[1]:04d}-t002"
    # hyperstack positions on request
    ok('selectImage("movie"); run("StarDist 2D (torch)", "normalize output=[ROI Manager] position=Hyperstack");')
    rois = roi_manager()
    assert [(r.getCPosition(), r.getZPosition(), r.getTPosition()) for r in rois][-1] == (0, 0, 2)


def test_stardist_rejects_what_it_cannot_do(imagej, crops):
    img, _ = crops
    show(xr.DataArray(np.stack([img, img]), dims=("c", "y", "x")), "two channels")
    r = run_macro('selectImage("two channels"); run("StarDist 2D (torch)", "normalize");')
    assert not r.ok and "2 channels but the model takes one" in r.error
    r = run_macro('run("StarDist 3D (torch)", "input=[two channels] normalize");')
    assert not r.ok and "'two channels' is not a z-stack" in r.error
    r = run_macro('selectImage("two channels"); run("StarDist 2D (torch)", "model=/no/such/model normalize");')
    assert not r.ok and "model=[/no/such/model] does not exist" in r.error
    r = run_macro('run("StarDist 2D (torch)", "input=[two channels] probability=1.5 normalize");')
    assert not r.ok and "between 0 and 1" in r.error


def test_recorded_stardist_line_replays_to_the_same_labels(imagej, crops):
    import jpype

    IJ = jpype.JClass("ij.IJ")
    Recorder = jpype.JClass("ij.plugin.frame.Recorder")
    WindowManager = jpype.JClass("ij.WindowManager")
    img, _ = crops
    show(calibrated(img, "cells"), "cells")
    recorder = Recorder(False)
    try:
        IJ.doCommand("StarDist 2D (torch)")  # as from the menu: a dialog on its own thread
        # string fields: probability, overlap, fiji; choices: input, model, output, position
        fill_generic_dialog("StarDist 2D (torch)", strings={0: "0.6"}, choices={2: "Label Image"})
        deadline = time.monotonic() + 60
        while WindowManager.getImage("cells-labels") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        text = str(recorder.getText())
    finally:
        recorder.close()
    from_dialog = pixels("cells-labels")
    lines = [ln for ln in text.splitlines() if "StarDist 2D (torch)" in ln]
    assert len(lines) == 1, text
    line = lines[0]
    assert "probability=0.6" in line and "output=[Label Image]" in line and "input=cells" in line
    ok('close("cells-labels");')
    ok(line)
    np.testing.assert_array_equal(pixels("cells-labels"), from_dialog)
    assert from_dialog.max() > 0


def test_measure_labels_is_calibrated(imagej, crops):
    from ij_bridge import results_to_dataframe

    img, mask = crops
    show(calibrated(mask, "truth"), "truth")
    show(calibrated(img, "signal"), "signal")
    ok('run("Measure Labels", "labels=truth intensity=signal");')
    df = results_to_dataframe()
    ids = np.unique(mask)[1:]
    # ImageJ's Results headings (a macro's getResult("Area", 0)), labels as integers, units
    assert df["Label"].tolist() == ids.tolist() and df["Label"].dtype == np.int64
    counts = np.bincount(mask.ravel())[ids]
    np.testing.assert_allclose(df["Area"], counts * PIXEL**2)
    assert df.attrs["units"]["Area"] == "µm^2" and df.attrs["units"]["X"] == "µm"
    means = np.array([img[mask == i].mean() for i in ids])
    np.testing.assert_allclose(df["Mean"], means, rtol=1e-6)
    yy, xx = np.nonzero(mask == ids[0])
    assert df.loc[0, "X"] == pytest.approx((xx.mean() + 0.5) * PIXEL)
    for col in ("Perim.", "Major", "Minor", "Angle", "Circ.", "Solidity", "Min", "Max", "StdDev",
                "Feret", "IntDen", "Median"):
        assert col in df.columns
    r = run_macro('print(getResult("Area", 0));')
    assert r.ok and float(r.output.strip().splitlines()[-1]) == pytest.approx(counts[0] * PIXEL**2)


def test_labels_rois_round_trip_keeps_values_and_calibration(imagej, crops):
    _, mask = crops
    sparse = np.where(mask > 0, mask * 3 + 100, 0).astype(np.uint16)  # non-consecutive labels
    show(calibrated(sparse, "sparse"), "sparse")
    ok('run("Labels to ROIs", "labels=sparse position=Automatic");')
    rois = roi_manager()
    assert len(rois) == len(np.unique(sparse)) - 1
    assert str(rois[0].getName()) == f"label-{int(np.unique(sparse)[1]):04d}"
    ok('selectImage("sparse"); run("ROIs to Labels", "image=sparse");')
    np.testing.assert_array_equal(pixels("sparse-labels"), sparse)
    cal = image("sparse-labels").getCalibration()
    assert (cal.pixelWidth, str(cal.getUnit())) == (PIXEL, "µm")


def test_label_commands_reject_non_label_images(imagej):
    show(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "float")
    r = run_macro('run("Measure Labels", "labels=float");')
    assert not r.ok and "non-integer values" in r.error
    r = run_macro('roiManager("reset"); run("ROIs to Labels", "image=float");')
    assert not r.ok and "ROI Manager is empty" in r.error


@pytest.mark.slow
def test_n2v_train_then_predict_keeps_calibration(imagej, crops, tmp_path):
    img, _ = crops
    show(calibrated(img[:64, :64], "noisy"), "noisy")
    model = tmp_path / "n2v_model"
    ok(f'run("N2V Train (torch)", "training=noisy model=[{model}] epochs=1 steps=1 batch=2 patch=32 '
       'radius=5 variant=N2V mode=2D");')
    assert (model / "weights.pt").is_file()
    ok(f'selectImage("noisy"); run("N2V Predict (torch)", "model=[{model}] tiles=2");')
    out = image("noisy-denoised")
    assert out.getBitDepth() == 32 and (out.getWidth(), out.getHeight()) == (64, 64)
    cal = out.getCalibration()
    assert (cal.pixelWidth, str(cal.getUnit())) == (PIXEL, "µm")
    assert np.isfinite(pixels("noisy-denoised")).all()
    r = run_macro('selectImage("noisy"); run("N2V Predict (torch)", "model=[/no/such/n2v]");')
    assert not r.ok and "N2V Predict (torch)" in r.error
    # 3D mode on a z-stack: z is a spatial axis of the model, the output keeps the stack
    stack = np.stack([img[:32, :32]] * 8).astype(np.float32)
    show(xr.DataArray(stack, dims=("z", "y", "x")), "zstack")
    ok('run("N2V Train + Predict (torch)", "training=zstack epochs=1 steps=1 batch=1 patch=16 mode=3D");')
    out = image("zstack-denoised")
    assert (out.getNSlices(), out.getWidth(), out.getBitDepth()) == (8, 32, 32)
