"""``ij-bridge stardist train / predict`` end to end (in process)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ij_bridge.cli import main
from ij_bridge.io import imread, imwrite, read_rois
from ij_bridge.metrics import matching
from ij_bridge.synthetic import synthetic_nuclei


def _calibrated(x, dims=("y", "x"), size=0.25):
    raw = (np.clip(x, 0, None) * 2000 + 50).astype(np.uint16)
    coords = {d: np.arange(n) * size for d, n in zip(dims, raw.shape) if d in "yx"}
    return xr.DataArray(raw, dims=dims, coords=coords, attrs={"units": {"x": "µm", "y": "µm"}})


def test_predict_writes_labels_rois_and_table(tmp_path, capsys):
    x, y = synthetic_nuclei((128, 144), n_objects=16, seed=11)
    (tmp_path / "in").mkdir()
    imwrite(tmp_path / "in" / "cells.tif", _calibrated(x))
    rc = main(["stardist", "predict", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    assert "cells.tif:" in capsys.readouterr().out
    lbl = imread(tmp_path / "out" / "cells_labels.tif")
    assert lbl.dims == ("y", "x") and lbl.shape == (128, 144) and lbl.dtype == np.uint16
    np.testing.assert_allclose(lbl.coords["x"].values[:3], [0, 0.25, 0.5])
    assert lbl.attrs["units"]["x"] == "µm"
    m = matching(y, lbl.values, thresh=0.5)
    assert m.f1 > 0.8, m
    rois = read_rois(tmp_path / "out" / "cells_rois.zip")
    present = sorted(int(v) for v in set(np.unique(lbl.values)) - {0})
    assert [r.name for r in rois] == [f"label-{i:04d}" for i in present]
    # ImageJ (x, y) polygon with pixel centres at +0.5 rasterises back onto the label
    from skimage.draw import polygon
    r0 = rois[0]
    xy = r0.coordinates()
    rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, lbl.shape)
    mask = np.zeros(lbl.shape, bool)
    mask[rr, cc] = True
    obj = lbl.values == present[0]
    assert (mask & obj).sum() / (mask | obj).sum() > 0.8
    df = pd.read_csv(tmp_path / "out" / "cells_objects.csv")
    assert len(df) >= len(present)
    assert {"label", "probability", "area", "centroid_x"} <= set(df.columns)
    # areas are calibrated: pixel count x 0.25^2
    row = df[df.label == present[0]].iloc[0]
    assert row.area == pytest.approx(obj.sum() * 0.0625)
    # existing outputs are not overwritten silently
    rc = main(["stardist", "predict", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_predict_time_series_positions_rois(tmp_path):
    x, _ = synthetic_nuclei((96, 96), n_objects=8, seed=12)
    stack = xr.DataArray((np.clip(np.stack([x, x[::-1]]), 0, None) * 1000).astype(np.uint16),
                         dims=("t", "y", "x"))
    imwrite(tmp_path / "movie.tif", stack)
    rc = main(["stardist", "predict", str(tmp_path / "movie.tif"), "--output", str(tmp_path / "o"),
               "--quiet", "--prob", "0.5", "--tiles", "1,2"])
    assert rc == 0
    lbl = imread(tmp_path / "o" / "movie_labels.tif")
    assert lbl.dims == ("t", "y", "x") and lbl.shape == (2, 96, 96)
    rois = read_rois(tmp_path / "o" / "movie_rois.zip")
    assert {r.position for r in rois} == {1, 2}
    assert all(r.name.endswith(f"-t{r.position:03d}") for r in rois)


def test_predict_errors(tmp_path, capsys):
    assert main(["stardist", "predict", str(tmp_path / "nope.tif"), "--output", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    x, _ = synthetic_nuclei((64, 64), n_objects=4, seed=1)
    imwrite(tmp_path / "a.tif", _calibrated(x))
    assert main(["stardist", "predict", str(tmp_path / "a.tif"), "--model", str(tmp_path / "none"),
                 "--output", str(tmp_path / "o")]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["stardist", "predict", str(tmp_path / "a.tif"), "--output", str(tmp_path / "o"),
                 "--tiles", "0"]) == 2


def test_train_then_predict(tmp_path, capsys):
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i in range(3):
        x, y = synthetic_nuclei((64, 64), n_objects=6, seed=20 + i)
        imwrite(tmp_path / "images" / f"im{i}.tif", _calibrated(x))
        imwrite(tmp_path / "masks" / f"im{i}.tif", y.astype(np.uint16))
    rc = main(["stardist", "train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
               "--model", str(tmp_path / "m.zip"), "--epochs", "1", "--steps", "2", "--patch-size", "32",
               "--rays", "8", "--batch-size", "2", "--quiet", "--plot", str(tmp_path / "h.png")])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "saved" in out and "validation F1@0.5" in out
    assert (tmp_path / "m.zip").is_file() and (tmp_path / "h.png").is_file()
    rc = main(["stardist", "predict", str(tmp_path / "images" / "im0.tif"), "--model", str(tmp_path / "m.zip"),
               "--output", str(tmp_path / "pred"), "--quiet"])
    assert rc == 0
    assert (tmp_path / "pred" / "im0_labels.tif").is_file()
    # a mask missing for an image is a user error
    (tmp_path / "masks" / "im2.tif").unlink()
    rc = main(["stardist", "train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
               "--model", str(tmp_path / "m2"), "--epochs", "1", "--steps", "1", "--patch-size", "32"])
    assert rc == 2 and "no mask of the same name" in capsys.readouterr().err
    # images smaller than the patch
    rc = main(["stardist", "train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "images"),
               "--model", str(tmp_path / "m3"), "--epochs", "1", "--steps", "1", "--patch-size", "128"])
    assert rc == 2


# ------------------------------------------------------------------------------------- 3D
TINY3D = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "stardist3d_tiny" / "nuclei1c"


def _stack(seed=7, nz=16, calibrated=True):
    x, _ = synthetic_nuclei((nz, 64, 64), n_objects=12, radius=(5.0, 8.0), seed=seed)
    data = (np.clip(x, 0, None) * 1000 + 100).astype(np.uint16)
    if not calibrated:
        return xr.DataArray(data, dims=("z", "y", "x"))
    coords = {"z": np.arange(nz) * 2.0, "y": np.arange(64) * 0.5, "x": np.arange(64) * 0.5}
    return xr.DataArray(data, dims=("z", "y", "x"), coords=coords,
                        attrs={"units": {"x": "µm", "y": "µm", "z": "µm"}})


def test_predict_3d_writes_the_label_stack_and_per_slice_rois(tmp_path, capsys):
    from test_outlines import fill, roi_loops

    from ij_bridge.workflows.stardist import load_model, segment

    imwrite(tmp_path / "stack.tif", _stack())
    rc = main(["stardist", "predict", str(tmp_path / "stack.tif"), "--model", str(TINY3D),
               "--output", str(tmp_path / "out"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "no z calibration" not in capsys.readouterr().err
    lbl = imread(tmp_path / "out" / "stack_labels.tif")
    assert lbl.dims == ("z", "y", "x") and lbl.shape == (16, 64, 64) and lbl.dtype == np.uint16
    np.testing.assert_allclose(lbl.coords["z"].values[:3], [0, 2, 4])
    np.testing.assert_allclose(lbl.coords["x"].values[:3], [0, 0.5, 1])
    assert lbl.attrs["units"]["z"] == "µm"
    expected = segment(imread(tmp_path / "stack.tif"), load_model(str(TINY3D)))
    np.testing.assert_array_equal(lbl.values, expected.labels.values)
    n = int(lbl.values.max())
    assert n >= 5
    # one ROI per object and slice, at its z position, covering exactly its voxels there
    rois = read_rois(tmp_path / "out" / "stack_rois.zip")
    assert len(rois) == sum(len(np.unique(p)) - 1 for p in lbl.values)
    for r in rois:
        value = int(r.props.split(":")[1])
        assert (r.c_position, r.t_position) == (0, 0) and 1 <= r.z_position <= 16
        assert r.name == f"label-{value:04d}-z{r.z_position:03d}"
        np.testing.assert_array_equal(fill(roi_loops(r), (64, 64)), lbl.values[r.z_position - 1] == value)
    # one row per object, volumes in µm³
    df = pd.read_csv(tmp_path / "out" / "stack_objects.csv")
    assert df["label"].tolist() == list(range(1, n + 1))
    assert df.loc[0, "volume"] == pytest.approx(np.sum(lbl.values == 1) * 0.5 * 0.5 * 2.0)


def test_predict_3d_bad_input(tmp_path, capsys):
    imwrite(tmp_path / "raw.tif", _stack(nz=8, calibrated=False))
    rc = main(["stardist", "predict", str(tmp_path / "raw.tif"), "--model", str(TINY3D),
               "--output", str(tmp_path / "o1"), "--quiet"])
    assert rc == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "no z calibration" in line]
    assert len(err) == 1 and err[0].startswith("warning: ") and "in voxels" in err[0]
    # a 3D model on a 2D image, a 2D model with --3d: one line each, naming the fix
    x, _ = synthetic_nuclei((64, 64), n_objects=4, seed=1)
    imwrite(tmp_path / "flat.tif", _calibrated(x))
    rc = main(["stardist", "predict", str(tmp_path / "flat.tif"), "--model", str(TINY3D),
               "--output", str(tmp_path / "o2"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is not a z-stack" in err and "2D model" in err and len(err.splitlines()) == 1
    rc = main(["stardist", "predict", str(tmp_path / "raw.tif"), "--3d", "--model", "stardist_nuclei2d",
               "--output", str(tmp_path / "o3"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is a 2D model" in err and "--3d" in err
    # a 2D model on a z-stack: slice by slice, with a note
    rc = main(["stardist", "predict", str(tmp_path / "raw.tif"), "--output", str(tmp_path / "o4"),
               "--quiet"])
    assert rc == 0
    assert "segments each of the 8 z slices" in capsys.readouterr().err
    assert imread(tmp_path / "o4" / "raw_labels.tif").dims == ("z", "y", "x")


def test_predict_3d_default_model(tmp_path, capsys, monkeypatch):
    """--3d without --model runs the bundled stardist_nuclei3d (here the tiny model under that
    name, so that the wiring is tested whatever ships); without it, one line."""
    import shutil

    from ij_bridge.stardist import model_io
    from ij_bridge.workflows.stardist import clear_model_cache

    models = tmp_path / "models"
    shutil.copytree(TINY3D, models / "stardist_nuclei3d")
    monkeypatch.setattr(model_io, "MODELS_DIR", models)
    clear_model_cache()
    try:
        imwrite(tmp_path / "stack.tif", _stack(nz=8))
        rc = main(["stardist", "predict", "--3d", str(tmp_path / "stack.tif"), "--output",
                   str(tmp_path / "a"), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        rc = main(["stardist", "predict", str(tmp_path / "stack.tif"), "--model", str(TINY3D),
                   "--output", str(tmp_path / "b"), "--quiet"])
        assert rc == 0
        np.testing.assert_array_equal(imread(tmp_path / "a" / "stack_labels.tif").values,
                                      imread(tmp_path / "b" / "stack_labels.tif").values)
        shutil.rmtree(models / "stardist_nuclei3d")
        clear_model_cache()
        capsys.readouterr()
        rc = main(["stardist", "predict", "--3d", str(tmp_path / "stack.tif"), "--output",
                   str(tmp_path / "c"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "no bundled one (stardist_nuclei3d is missing)" in err, err
    finally:
        clear_model_cache()
