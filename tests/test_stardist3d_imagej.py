"""``run("StarDist 3D (torch)", ...)`` end to end in a real ImageJ (virtual display).

A calibrated z-stack (and z+t, z+c hyperstacks) of synthetic nuclei goes through
the command as a macro writes it; checked: the label stack (pixels equal the
Python API's, calibration and origin copied, the label LUT), the ROI Manager
(one ROI per object and slice, hyperstack positions, names and the label
property; ImageJ's own ROI Manager Measure finds exactly each object's voxels
on its slice), the objects table (one row per object), and the bad inputs
(one line naming the fix, before any work).

The model is tiny (tests/fixtures/stardist3d_tiny, made by
scripts/make_tiny_stardist3d.py): it tests the plumbing, not the quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import image, show  # and the `imagej` fixture

from ij_bridge.synthetic import synthetic_nuclei

pytestmark = pytest.mark.imagej

TINY = Path(__file__).resolve().parent / "fixtures" / "stardist3d_tiny"
MODEL = TINY / "nuclei1c"
MODEL_2C = TINY / "nuclei2c"
PW, PD = 0.5, 2.0  # µm: pixel width/height and voxel depth
ORIGIN = (3.0, 5.0, 2.0)  # x, y, z origin in pixels (ImageJ's Calibration.xOrigin...)


def nuclei_stack(seed: int = 7, nz: int = 16, calibrated: bool = True) -> xr.DataArray:
    x, _ = synthetic_nuclei((nz, 64, 64), n_objects=12, radius=(5.0, 8.0), seed=seed)
    data = (np.clip(x, 0, None) * 1000 + 100).astype(np.uint16)
    if not calibrated:
        return xr.DataArray(data, dims=("z", "y", "x"))
    coords = {"z": (np.arange(nz) - ORIGIN[2]) * PD, "y": (np.arange(64) - ORIGIN[1]) * PW,
              "x": (np.arange(64) - ORIGIN[0]) * PW}
    return xr.DataArray(data, dims=("z", "y", "x"), coords=coords,
                        attrs={"units": {"x": "µm", "y": "µm", "z": "µm"}})


def run(code):
    from ij_bridge.commands import run_macro

    r = run_macro(code)
    assert r.ok, r.error
    return r


def fails(code):
    from ij_bridge.commands import run_macro

    r = run_macro(code)
    assert not r.ok
    return r.error.strip().splitlines()[0]


def roi_manager():
    from ij_bridge.imagej._java import jc

    rm = jc.RoiManager.getInstance()
    return [] if rm is None else list(rm.getRoisAsArray())


def check_calibration(lab_imp, src_imp):
    a, b = lab_imp.getCalibration(), src_imp.getCalibration()
    for f in ("pixelWidth", "pixelHeight", "pixelDepth", "xOrigin", "yOrigin", "zOrigin", "frameInterval"):
        assert getattr(a, f) == pytest.approx(getattr(b, f)), f
    assert str(a.getUnit()) == str(b.getUnit()) == "µm"
    assert str(a.getZUnit()) == "µm"
    assert (lab_imp.getNChannels(), lab_imp.getNSlices(), lab_imp.getNFrames()) == \
        (1, src_imp.getNSlices(), src_imp.getNFrames())


def test_z_stack_labels_rois_and_table(imagej):
    from ij_bridge import from_imageplus, results_to_dataframe
    from ij_bridge.imagej.rois import rois_to_labels
    from ij_bridge.luts import label_lut
    from ij_bridge.workflows.stardist import load_model, segment

    da = nuclei_stack()
    src = show(da, "stack")
    r = run(f'run("StarDist 3D (torch)", "input=stack model=[{MODEL}] normalize output=Both table");')
    lab_imp = image("stack-labels")
    labels = np.asarray(from_imageplus(lab_imp).values)
    # the same objects as the Python API on the same pixels and calibration
    expected = segment(from_imageplus(src), load_model(str(MODEL)), exclude_border=2)
    np.testing.assert_array_equal(labels, expected.labels.values)
    n = int(labels.max())
    assert n >= 5 and n == expected.n_objects and sorted(np.unique(labels)) == list(range(n + 1))
    assert lab_imp.getBitDepth() == 16
    check_calibration(lab_imp, src)
    assert f"{n} objects" in r.output
    # the label LUT, one entry per label
    import jpype

    lut = lab_imp.getProcessor().getLut()
    got = []
    for channel in (lut.getReds, lut.getGreens, lut.getBlues):
        arr = jpype.JArray(jpype.JByte)(256)
        channel(arr)
        got.append(np.asarray(arr, dtype=np.int8).view(np.uint8))
    got = np.stack(got, axis=1)
    np.testing.assert_array_equal(got, label_lut())
    assert (lab_imp.getDisplayRangeMin(), lab_imp.getDisplayRangeMax()) == (0, 255)
    # ROI Manager: one ROI per object and slice it occupies, at that slice (c = 0: all channels)
    rois = roi_manager()
    assert len(rois) == sum(len(np.unique(p)) - 1 for p in labels)
    for roi in rois:
        value, z = int(str(roi.getProperty("label"))), int(roi.getZPosition())
        assert roi.hasHyperStackPosition() and (roi.getCPosition(), roi.getTPosition()) == (0, 0)
        assert str(roi.getName()) == f"label-{value:04d}-z{z:03d}"
    np.testing.assert_array_equal(rois_to_labels(rois, labels.shape), labels)
    # ImageJ's own by-slice tool: ROI Manager > Measure on the label stack finds, for each ROI,
    # only its object's voxels (min = max = label) on the ROI's slice, and their area
    run('selectImage("stack-labels"); run("Set Measurements...", "area min stack redirect=None '
        'decimal=4"); run("Clear Results"); roiManager("Deselect"); roiManager("Measure");')
    res = results_to_dataframe("Results")
    assert len(res) == len(rois)
    for roi, (_, row) in zip(rois, res.iterrows()):
        value, z = int(str(roi.getProperty("label"))), int(roi.getZPosition())
        assert row["Min"] == row["Max"] == value and row["Slice"] == z
        assert row["Area"] == pytest.approx(np.sum(labels[z - 1] == value) * PW * PW)
    # the objects table: one row per object
    table = results_to_dataframe("stack-objects")
    assert len(table) == n and table["Label"].tolist() == list(range(1, n + 1))
    assert table["probability"].is_monotonic_decreasing


def test_z_t_hyperstack(imagej):
    from ij_bridge import from_imageplus
    from ij_bridge.workflows.stardist import load_model, segment

    a, b = nuclei_stack(seed=3, nz=8), nuclei_stack(seed=4, nz=8)
    movie = xr.concat([a, b], dim="t").assign_coords(t=[0.0, 30.0]).transpose("t", "z", "y", "x")
    movie.attrs = {"units": {"x": "µm", "y": "µm", "z": "µm", "t": "sec"}}
    src = show(movie, "movie")
    assert src.isHyperStack() and (src.getNSlices(), src.getNFrames()) == (8, 2)
    r = run(f'run("StarDist 3D (torch)", "input=movie model=[{MODEL}] normalize output=Both '
            'position=Automatic");')
    lab_imp = image("movie-labels")
    check_calibration(lab_imp, src)
    assert lab_imp.isHyperStack()
    labels = np.asarray(from_imageplus(lab_imp).values)
    assert labels.shape == (2, 8, 64, 64)
    # each frame is segmented as its own volume, numbered 1..n
    model = load_model(str(MODEL))
    for t, frame in enumerate((a, b)):
        alone = segment(from_imageplus(src).isel(t=t), model, exclude_border=2).labels.values
        np.testing.assert_array_equal(labels[t], alone)
    counts = [int(labels[t].max()) for t in range(2)]
    assert f"({counts[0]}, {counts[1]} per frame)" in r.output
    rois = roi_manager()
    assert len(rois) == sum(len(np.unique(labels[t, z])) - 1 for t in range(2) for z in range(8))
    last = rois[-1]
    assert (last.getCPosition(), last.getTPosition()) == (0, 2)
    assert str(last.getName()).endswith(f"-t002-z{last.getZPosition():03d}")
    # plain stack positions on request: n = (t - 1) * nz + z
    run(f'run("StarDist 3D (torch)", "input=movie model=[{MODEL}] normalize output=[ROI Manager] '
        'position=Stack");')
    last = roi_manager()[-1]
    assert not last.hasHyperStackPosition()
    name = str(last.getName())
    assert last.getPosition() == 8 + int(name[-3:])


def test_channels(imagej):
    from ij_bridge import from_imageplus

    da = nuclei_stack(seed=5, nz=8)
    two = xr.concat([da, (da // 2).astype(np.uint16)], dim="c").transpose("z", "c", "y", "x")
    two.attrs = dict(da.attrs)
    src = show(two, "two")
    # a one-channel model on two channels: one line naming the fix, as the 2D command says it
    msg = fails(f'run("StarDist 3D (torch)", "input=two model=[{MODEL}] normalize");')
    assert "2 channels but the model takes one" in msg and "select the channel" in msg
    # the channel picked as in ImageJ, then segmented
    run('selectImage("two"); run("Duplicate...", "title=one duplicate channels=1");')
    run(f'run("StarDist 3D (torch)", "input=one model=[{MODEL}] normalize");')
    assert image("one-labels").getNSlices() == 8
    # a model trained on two channels takes both
    run(f'run("StarDist 3D (torch)", "input=two model=[{MODEL_2C}] normalize");')
    lab_imp = image("two-labels")
    assert lab_imp.getNChannels() == 1 and lab_imp.getNSlices() == 8
    check_calibration(lab_imp, src)
    assert from_imageplus(lab_imp).dims == ("z", "y", "x")


def test_bad_input_one_line_before_any_work(imagej):
    show(nuclei_stack(nz=8).isel(z=0), "flat")
    # checked before the model is read: a model that does not exist is not the first complaint
    msg = fails('run("StarDist 3D (torch)", "input=flat model=/no/such/model normalize");')
    assert "'flat' is not a z-stack" in msg and 'run("StarDist 2D (torch)"' in msg, msg
    # frames that should be slices: the fix is named
    frames = nuclei_stack(nz=8).rename(z="t").assign_coords(t=np.arange(8.0))
    show(frames, "frames")
    msg = fails(f'run("StarDist 3D (torch)", "input=frames model=[{MODEL}]");')
    assert "not a z-stack" in msg and "Image > Properties" in msg and "slices=8" in msg, msg
    # a 3D model in the 2D command
    msg = fails(f'run("StarDist 2D (torch)", "input=flat model=[{MODEL}]");')
    assert "is a 3D model" in msg and 'run("StarDist 3D (torch)"' in msg, msg


def test_uncalibrated_and_thin_stacks(imagej):
    from ij_bridge import from_imageplus

    show(nuclei_stack(nz=8, calibrated=False), "raw")
    r = run(f'run("StarDist 3D (torch)", "input=raw model=[{MODEL}] normalize");')
    warning = [line for line in r.output.splitlines() if "no z calibration" in line]
    assert len(warning) == 1 and "in voxels" in warning[0] and "Image > Properties" in warning[0]
    # 3 slices, fewer than the tiny model's z divisor 4: padded for the network, 3 slices out
    thin = nuclei_stack(nz=8).isel(z=slice(2, 5))
    show(thin, "thin")
    r = run(f'run("StarDist 3D (torch)", "input=thin model=[{MODEL}] normalize");')
    assert "no z calibration" not in r.output
    assert "fewer than the model's z divisor 4: padded" in r.output
    labels = from_imageplus(image("thin-labels"))
    assert labels.sizes["z"] == 3 and int(labels.max()) >= 1


def test_2d_model_on_a_stack_segments_slices_with_a_note(imagej):
    from ij_bridge import from_imageplus

    show(nuclei_stack(nz=3), "slices")
    r = run('run("StarDist 2D (torch)", "input=slices normalize output=[Label Image]");')
    assert "the 2D model segments each of the 3 z slices of 'slices' on its own" in r.output
    assert from_imageplus(image("slices-labels")).sizes["z"] == 3


def test_outline_rois_match_imagej_threshold_to_selection(imagej):
    """The Java-free outlines (used by the 3D command and the CLI) cover exactly the pixels of
    ImageJ's own ThresholdToSelection outlines (imagej.rois.labels_to_rois)."""
    from ij_bridge.imagej.rois import labels_to_rois, roi_to_java
    from ij_bridge.outlines import outline_rois

    rng = np.random.default_rng(1)
    stack = (rng.integers(0, 4, (3, 24, 20)) * (rng.random((3, 24, 20)) < 0.7)).astype(np.uint16)
    ours = [roi_to_java(r) for r in outline_rois(stack)]
    theirs = labels_to_rois(stack, position="hyperstack")
    assert [str(r.getName()) for r in ours] == [str(r.getName()) for r in theirs]

    def mask(roi):
        b = roi.getBounds()
        m = np.zeros((24 + 2, 20 + 2), bool)
        ip = roi.getMask()
        inner = (np.ones((b.height, b.width), bool) if ip is None else
                 np.asarray(ip.getPixels()).reshape(b.height, b.width) != 0)
        m[b.y:b.y + b.height, b.x:b.x + b.width] = inner
        return m

    for a, b in zip(ours, theirs):
        assert a.getZPosition() == b.getZPosition()
        np.testing.assert_array_equal(mask(a), mask(b), err_msg=str(a.getName()))


def test_default_model_is_the_bundled_stardist_nuclei3d(imagej, tmp_path, monkeypatch):
    """Without model=, the command runs DEFAULT_MODEL_3D from the bundled models (here a folder
    holding the tiny model under that name, so that the wiring is tested whatever ships)."""
    import shutil

    from ij_bridge import from_imageplus
    from ij_bridge.stardist import model_io
    from ij_bridge.workflows.stardist import DEFAULT_MODEL_3D, clear_model_cache

    assert DEFAULT_MODEL_3D == "stardist_nuclei3d"
    models = tmp_path / "models"
    shutil.copytree(MODEL, models / DEFAULT_MODEL_3D)
    monkeypatch.setattr(model_io, "MODELS_DIR", models)
    clear_model_cache()
    try:
        show(nuclei_stack(), "stack")
        r = run('run("StarDist 3D (torch)", "input=stack normalize");')
        assert f"models/{DEFAULT_MODEL_3D}, probability" in r.output
        default = np.asarray(from_imageplus(image("stack-labels")).values)
        run(f'run("StarDist 3D (torch)", "input=stack model=[{MODEL}] normalize");')
        np.testing.assert_array_equal(default, from_imageplus(image("stack-labels-2")).values)
        assert default.max() >= 5
        # an installation without it: one line asking for model=
        shutil.rmtree(models / DEFAULT_MODEL_3D)
        clear_model_cache()
        msg = fails('run("StarDist 3D (torch)", "input=stack normalize");')
        assert "no bundled 3D model (stardist_nuclei3d)" in msg and "model=" in msg, msg
    finally:
        clear_model_cache()


def test_the_bundled_3d_model_by_default(imagej):
    """Without model=, the bundled stardist_nuclei3d segments a calibrated anisotropic stack
    (z-step twice the pixel size, as it was trained for): the macro a biologist writes."""
    import warnings

    from ij_bridge import from_imageplus
    from ij_bridge.metrics import matching

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only k of n objects fit"
        x, truth = synthetic_nuclei((16, 64, 64), n_objects=12, radius=(5.0, 7.0), seed=12,
                                    anisotropy=2.0)
    da = xr.DataArray((np.clip(x, 0, None) * 1000 + 100).astype(np.uint16), dims=("z", "y", "x"),
                      coords={"z": np.arange(16) * 1.0, "y": np.arange(64) * 0.5,
                              "x": np.arange(64) * 0.5},
                      attrs={"units": {"x": "µm", "y": "µm", "z": "µm"}})
    src = show(da, "nuclei3d")
    r = run('run("StarDist 3D (torch)", "input=nuclei3d normalize output=Both");')
    assert "models/stardist_nuclei3d, probability" in r.output
    lab_imp = image("nuclei3d-labels")
    check_calibration(lab_imp, src)
    labels = np.asarray(from_imageplus(lab_imp).values)
    m = matching(truth, labels, thresh=0.5)
    assert m.f1 > 0.4, m  # 0.64 when written; the model's own scores are in its README
    assert len(roi_manager()) == sum(len(np.unique(p)) - 1 for p in labels)
