"""Blockwise prediction of images larger than memory (issue 14 item 3): StarDist 2D and N2V.

CI-sized: the blockwise path must give the objects (and denoised values) of
whole-image prediction, write its output through a staged file, and leave
nothing behind when cancelled. No timings here (scripts/bench_big.py).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ij_bridge import cancel
from ij_bridge.model_files import DestinationExistsError

REF = Path(__file__).parent / "fixtures" / "reference"


@pytest.fixture(scope="module")
def sd_model():
    from ij_bridge.stardist import StarDist2D

    return StarDist2D.load(REF / "stardist" / "2d_grid2")  # made by the original StarDist


@pytest.fixture(scope="module")
def nuclei():
    from ij_bridge.synthetic import synthetic_nuclei

    # 728 x 664: neither side a multiple of the divisor (16), so the last blocks are padded
    img, _ = synthetic_nuclei((728, 664), n_objects=165, radius=(4, 8), seed=3, texture=0.0, overlap=0.0,
                              background=0.2, intensity=(0.8, 1.0), elongation=0.3, irregularity=0.05,
                              noise=0.1, photons=None)
    return (np.clip(img + 0.5, 0, None) * 20000).astype(np.uint16)


@pytest.fixture(scope="module")
def whole(sd_model, nuclei):
    return sd_model.predict_instances(nuclei, n_tiles=1)


def _no_leftovers(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


def test_stardist_blockwise_equals_whole_image(sd_model, nuclei, whole, tmp_path):
    lbl, det = whole
    assert lbl.max() > 100  # the model finds most of the nuclei
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, nuclei)  # uncompressed: read back as a memory map, block by block
    out = tmp_path / "labels.tif"
    # cores of 256 x 320: 3 x 3 blocks, the last ones partial (216 and 24 pixels); many objects
    # cut by core borders
    lab, d = sd_model.predict_instances_big(str(path), out, block_size=(256, 320))
    assert d["n_blocks"] == 9 and d["percentiles_stride"] == 1
    assert isinstance(lab, np.memmap) and lab.dtype == np.int32
    # the same objects with the same numbers (1..n by decreasing probability), pixel for pixel
    np.testing.assert_array_equal(np.asarray(lab), lbl)
    np.testing.assert_array_equal(d["points"], det["points"])
    # the network's maps of a block equal the whole image's to float rounding (oneDNN sums in
    # another order for another tensor size): probabilities and vertices to about 1e-7
    np.testing.assert_allclose(d["prob"], det["prob"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(d["coord"], det["coord"], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(tifffile.imread(out), lbl)
    del lab
    _no_leftovers(tmp_path, {"in.tif", "labels.tif"})


def test_stardist_blockwise_into_a_given_array(sd_model, nuclei, whole):
    from ij_bridge.stardist.big import predict_instances_big

    lbl, _ = whole
    target = np.full(nuclei.shape, -1, np.int32)  # an array given as output is filled completely
    lab, d = predict_instances_big(sd_model, nuclei, target, block_size=384)
    assert lab is target
    np.testing.assert_array_equal(lab, lbl)


def test_stardist_big_output_staged_and_never_overwritten(sd_model, nuclei, tmp_path):
    out = tmp_path / "labels.tif"
    out.write_bytes(b"not mine")
    calls = []
    with pytest.raises(DestinationExistsError):  # refused before any work
        sd_model.predict_instances_big(nuclei, out, progress=lambda *a: calls.append(a))
    assert calls == [] and out.read_bytes() == b"not mine"
    lab, _ = sd_model.predict_instances_big(nuclei[:400, :400], out, overwrite=True, block_size=256)
    assert tifffile.imread(out).shape == (400, 400)
    del lab
    _no_leftovers(tmp_path, {"labels.tif"})


def test_stardist_big_cancel_leaves_nothing(sd_model, nuclei, tmp_path):
    out = tmp_path / "labels.tif"
    seen = []
    with cancel.cancel_scope() as scope:
        def progress(done, total, message):
            seen.append((done, message))
            if message == "predicting blocks" and done >= 3:
                scope.cancel(cancel.INTERRUPTED)
        with pytest.raises(cancel.Cancelled):
            sd_model.predict_instances_big(nuclei, out, block_size=320, progress=progress)
    assert seen[-1][0] < 10  # stopped mid-way, at the next block
    _no_leftovers(tmp_path, set())


def test_stardist_big_bad_input_one_line(sd_model, tmp_path):
    with pytest.raises(ValueError, match="shape"):
        sd_model.predict_instances_big(np.zeros((64, 64, 2), np.uint16))
    bad = tmp_path / "compressed.tif"
    tifffile.imwrite(bad, np.zeros((64, 64), np.uint16), compression="zlib")
    with pytest.raises(ValueError, match="memory-mapped"):
        sd_model.predict_instances_big(str(bad))


def test_percentiles_on_a_subsample():
    from ij_bridge.stardist.big import normalization_percentiles

    x = np.random.default_rng(0).integers(0, 1000, (300, 200)).astype(np.uint16)
    lo, hi, s = normalization_percentiles(x, 1, 99.8, sample_pixels=60_000)
    assert s == 1 and np.allclose([lo.item(), hi.item()], np.percentile(x.astype(np.float32), (1, 99.8)))
    lo, hi, s = normalization_percentiles(x, 1, 99.8, sample_pixels=10_000)
    assert s == 3 and np.isclose(hi.item(), np.percentile(x[::3, ::3].astype(np.float32), 99.8))


# ----------------------------------------------------------------------------- N2V

@pytest.fixture(scope="module")
def n2v_2d():
    from ij_bridge.n2v import N2V

    return N2V.load(REF / "n2v" / "n2v_2d")


def test_n2v_plane_by_plane_equals_whole_stack(n2v_2d, tmp_path):
    from ij_bridge.n2v.big import predict_big

    stack = np.random.default_rng(1).normal(100, 20, (4, 72, 88)).astype(np.float32)
    ref = n2v_2d.predict(stack, axes="TYX")
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    out = tmp_path / "denoised.tif"
    res = predict_big(n2v_2d, str(path), out, axes="TYX")
    np.testing.assert_array_equal(np.asarray(res), ref)
    assert tifffile.imread(out).shape == (4, 72, 88)
    del res
    _no_leftovers(tmp_path, {"stack.tif", "denoised.tif"})
    with pytest.raises(DestinationExistsError):
        predict_big(n2v_2d, stack, out, axes="TYX")


def test_n2v_3d_slabs_equal_whole_stack():
    from ij_bridge.n2v import N2V
    from ij_bridge.n2v.big import predict_big

    model = N2V.load(REF / "n2v" / "n2v_3d")
    stack = np.random.default_rng(2).normal(50, 10, (28, 40, 48)).astype(np.float32)
    ref = model.predict(stack, axes="ZYX")
    res = predict_big(model, stack, axes="ZYX", slab=8)
    np.testing.assert_allclose(res, ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))


def test_n2v_big_cancel_leaves_nothing(n2v_2d, tmp_path):
    from ij_bridge.n2v.big import predict_big

    stack = np.zeros((6, 64, 64), np.float32)
    out = tmp_path / "denoised.tif"
    with cancel.cancel_scope() as scope:
        def progress(done, total, message):
            if done == 2:
                scope.cancel(cancel.INTERRUPTED)
        with pytest.raises(cancel.Cancelled):
            predict_big(n2v_2d, stack, out, axes="TYX", progress=progress)
    _no_leftovers(tmp_path, set())


# ----------------------------------------------------------------------------- CLI

def test_cli_stardist_big_equals_whole_image(nuclei, tmp_path):
    from ij_bridge.cli import main
    from ij_bridge.io import imread, read_rois

    crop = nuclei[:520, :600]
    assert crop.shape == (520, 600)
    (tmp_path / "in").mkdir()
    # µm escaped as ImageJ writes it, unequal pixel sizes and an origin: all must reach the labels
    tifffile.imwrite(tmp_path / "in" / "slide.tif", crop, imagej=True, resolution=(1 / 0.65, 1 / 0.5),
                     metadata={"unit": "\\u00B5m", "xorigin": 3, "yorigin": 5})
    model = str(REF / "stardist" / "2d_grid2")
    common = ["stardist", "predict", str(tmp_path / "in" / "slide.tif"), "--model", model, "--quiet"]
    assert main(common + ["--output", str(tmp_path / "big"), "--big", "--block-size", "320"]) == 0
    assert main(common + ["--output", str(tmp_path / "whole"), "--no-big"]) == 0
    big = imread(tmp_path / "big" / "slide_labels.tif")
    whole = imread(tmp_path / "whole" / "slide_labels.tif")
    assert big.dtype == np.uint16
    assert big.attrs["calibration"] == whole.attrs["calibration"] == imread(tmp_path / "in" / "slide.tif").attrs[
        "calibration"]
    assert big.attrs["calibration"]["x_unit"] == "µm" and big.attrs["calibration"]["x_origin"] == 3.0
    np.testing.assert_array_equal(big.values, whole.values)
    assert len(read_rois(tmp_path / "big" / "slide_rois.zip")) == int(whole.values.max())
    import pandas as pd

    table = pd.read_csv(tmp_path / "big" / "slide_objects.csv")
    assert len(table) == int(whole.values.max()) and {"label", "probability", "area_px"} <= set(table.columns)
    _no_leftovers(tmp_path / "big", {"slide_labels.tif", "slide_rois.zip", "slide_objects.csv"})


def test_cli_n2v_big_equals_whole_stack(tmp_path):
    from ij_bridge.cli import main

    stack = np.random.default_rng(4).normal(100, 20, (3, 64, 80)).astype(np.float32)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "movie.tif", stack, imagej=True, resolution=(1 / 0.65, 1 / 0.5),
                     metadata={"axes": "TYX", "unit": "\\u00B5m", "xorigin": 3, "yorigin": 5, "finterval": 2.5})
    model = str(REF / "n2v" / "n2v_2d")
    common = ["n2v", "predict", str(tmp_path / "in" / "movie.tif"), "--model", model, "--quiet"]
    assert main(common + ["--output", str(tmp_path / "big"), "--big"]) == 0
    assert main(common + ["--output", str(tmp_path / "whole"), "--no-big"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "big" / "movie.tif"),
                                  tifffile.imread(tmp_path / "whole" / "movie.tif"))
    from ij_bridge.io import imread

    cal = imread(tmp_path / "in" / "movie.tif").attrs["calibration"]
    assert cal["x_unit"] == "µm" and cal["frame_interval"] == 2.5
    # the plane-by-plane output carries the input's calibration, as the whole-stack one does
    assert imread(tmp_path / "big" / "movie.tif").attrs["calibration"] == cal
    assert imread(tmp_path / "whole" / "movie.tif").attrs["calibration"] == cal
    _no_leftovers(tmp_path / "big", {"movie.tif"})


def test_workflow_segment_big_equals_whole(sd_model, nuclei, whole):
    from ij_bridge.workflows.stardist import segment

    crop = nuclei[:400, :520]
    a = segment(crop, sd_model, big=True)
    b = segment(crop, sd_model, big=False)
    np.testing.assert_array_equal(a.labels.values, b.labels.values)
    assert a.n_objects == b.n_objects > 20


def test_size_threshold_decides_the_path(sd_model):
    from ij_bridge.workflows.big import use_big_n2v, use_big_stardist

    small = {"shape": (4096, 4096), "axes": "YX"}
    large = {"shape": (4097, 4096), "axes": "YX"}
    stack = {"shape": (40, 4097, 4096), "axes": "ZYX"}
    assert not use_big_stardist(small, sd_model, None) and use_big_stardist(large, sd_model, None)
    assert use_big_stardist(small, sd_model, True) and not use_big_stardist(large, sd_model, False)
    assert not use_big_stardist(stack, sd_model, None)  # a stack goes plane by plane in memory
    assert use_big_n2v(stack, None) and not use_big_n2v(stack, False) and not use_big_n2v(small, None)


def test_bfloat16_option_close_to_float32(sd_model, nuclei, whole):
    from ij_bridge.metrics import matching

    lbl, _ = whole
    from ij_bridge.device import EmulatedBfloat16Warning, bf16_native

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lab, _ = sd_model.predict_instances_big(nuclei, precision="bfloat16", block_size=384)
    emulated = [str(w.message) for w in caught if issubclass(w.category, EmulatedBfloat16Warning)]
    assert len(emulated) == (0 if bf16_native() else 1) and all(
        "prediction runs" in m and m.endswith("set precision='float32'") for m in emulated)
    assert matching(lbl, lab, thresh=0.5).f1 > 0.95  # a documented trade: a few objects change
    with pytest.raises(ValueError, match="precision"):
        sd_model.predict_instances_big(nuclei, precision="half")


def test_full_disk_is_an_error_and_leaves_nothing(sd_model, n2v_2d, nuclei, tmp_path):
    import errno
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)], check=True)
    try:  # 728 x 664 int32 labels need 1.9 MB: refused as ENOSPC, not a SIGBUS mid-write
        seen = []
        with pytest.raises(OSError) as err:
            sd_model.predict_instances_big(nuclei, disk / "labels.tif", block_size=384,
                                           progress=lambda *a: seen.append(a))
        assert err.value.errno == errno.ENOSPC and "nothing was left behind" in str(err.value)
        assert seen == []  # before the long work
        from ij_bridge.n2v.big import predict_big

        with pytest.raises(OSError) as err:
            predict_big(n2v_2d, np.zeros((4, 256, 256), np.float32), disk / "d.tif", axes="TYX")
        assert err.value.errno == errno.ENOSPC
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
