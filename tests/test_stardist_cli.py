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
