"""The three front ends of StarDist agree: the same image through the command line
(``ij-bridge stardist predict``), the ImageJ command ("StarDist 2D (torch)") and the
Python API (``ij_bridge.workflows.stardist.segment``) gives byte-identical label
images, the same ROIs (the model's polygons, each carrying its label) and the same
objects table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ij_bridge.io import imread, imwrite, read_rois, read_table
from ij_bridge.measure import from_imagej_columns

PIXEL = 0.5  # µm


@pytest.fixture(scope="module")
def cells(tmp_path_factory, shared_data):
    """A calibrated 128 x 128 crop of the shared nuclei image (touching nuclei), as a TIFF."""
    import tifffile

    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")[384:512, :128]
    da = xr.DataArray(img, dims=("y", "x"),
                      coords={d: np.arange(128) * PIXEL for d in ("y", "x")},
                      attrs={"units": {"x": "µm", "y": "µm"}})
    path = tmp_path_factory.mktemp("frontends") / "cells.tif"
    imwrite(path, da)
    return path


def _roi_summary(rois):
    """What an ROI is, for comparing: name, label property, type, positions, vertices."""
    out = []
    for r in rois:
        out.append((r.name, r.properties.get("label"), int(r.roitype), int(r.position),
                    int(r.c_position), int(r.z_position), int(r.t_position),
                    np.asarray(r.coordinates(), dtype=np.float64).round(4).tobytes()))
    return out


@pytest.mark.imagej
def test_cli_command_and_api_give_the_same_objects(clean_imagej, cells, tmp_path):
    import jpype

    from ij_bridge.cli import main
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.images import from_imageplus
    from ij_bridge.imagej.rois import get_roi_manager_rois
    from ij_bridge.imagej.tables import results_to_dataframe
    from ij_bridge.workflows.stardist import load_model, segment

    # 1. Python API
    seg = segment(imread(cells), load_model(), exclude_border=2)
    api_labels, api_rois, api_table = seg.labels, seg.rois(), seg.table
    assert seg.n_objects >= 8  # a real segmentation of the crop's nuclei, not an empty one

    # 2. command line
    out = tmp_path / "cli"
    assert main(["stardist", "predict", str(cells), "--output", str(out), "--exclude", "2",
                 "--quiet"]) == 0
    cli_labels = imread(out / "cells_labels.tif")
    cli_rois = read_rois(out / "cells_rois.zip")
    cli_table = read_table(out / "cells_objects.csv")

    # 3. the ImageJ command on the same file opened by ImageJ
    install_commands()
    r = run_macro(f'open("{cells}");\n'
                  'run("StarDist 2D (torch)", "input=cells.tif normalize low=1 high=99.8 '
                  'output=Both tiles=0 exclude=2 table");')
    assert r.ok, r.error
    imp = jpype.JClass("ij.WindowManager").getImage("cells-labels")
    assert imp is not None
    ij_labels = from_imageplus(imp)
    ij_rois = get_roi_manager_rois()
    # the ImageJ table has ImageJ's headings (Label, Area...); mapped back, it is the API's table
    ij_raw = results_to_dataframe("cells-objects")
    assert {"Label", "Area", "X", "Y", "probability"} <= set(ij_raw.columns)
    ij_table = from_imagej_columns(ij_raw)

    # label images: byte-identical, same type and calibration
    for other in (cli_labels, ij_labels):
        assert other.dtype == api_labels.dtype == np.uint16
        assert other.dims == api_labels.dims
        assert other.values.tobytes() == api_labels.values.tobytes()
        for d in ("y", "x"):
            np.testing.assert_allclose(other.coords[d].values, api_labels.coords[d].values)
        assert other.attrs["units"]["x"] == "µm"
    # ROIs: the model's polygons, one per object, named and carrying the object's label
    n = int(api_labels.max())
    assert [r.name for r in api_rois] == [f"label-{k:04d}" for k in range(1, n + 1)]
    assert [r.properties["label"] for r in api_rois] == list(range(1, n + 1))
    assert all(r.roitype == 0 for r in api_rois)  # roifile.ROI_TYPE.POLYGON
    assert _roi_summary(cli_rois) == _roi_summary(api_rois)
    assert _roi_summary(ij_rois) == _roi_summary(api_rois)
    # the table: one row per object of the label image
    assert list(api_table["label"]) == list(range(1, n + 1))
    assert {"probability", "center_y_px", "center_x_px", "area"} <= set(api_table.columns)
    for other in (cli_table, ij_table):
        other = other.reset_index(drop=True)
        assert list(other.columns) == list(api_table.columns)
        pd.testing.assert_frame_equal(other, api_table.reset_index(drop=True), check_dtype=False,
                                      rtol=1e-9)
    run_macro('close("*");')


def test_polygons_and_label_image_describe_the_same_objects(cells):
    """Where polygons overlap, the label image gives the pixel to one object; every ROI still
    covers most of its object's pixels, and no object of the table lacks pixels."""
    from skimage.draw import polygon

    from ij_bridge.workflows.stardist import load_model, segment

    seg = segment(imread(cells), load_model())
    labels = np.asarray(seg.labels.values)
    ids = set(np.unique(labels)) - {0}
    assert ids == set(range(1, seg.n_objects + 1)) == set(seg.table["label"])
    for roi in seg.rois():
        k = roi.properties["label"]
        xy = roi.coordinates()
        rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, labels.shape)
        inside = labels[rr, cc]
        # the object's own pixels lie inside its polygon
        assert np.count_nonzero(inside == k) >= 0.9 * np.count_nonzero(labels == k), k


def test_training_splits_with_the_seed_and_3d_sets_anisotropy(tmp_path):
    """One pairing and split rule: the same seed holds out the same pairs; z-stacks with
    2 µm slices of 0.5 µm pixels train a 3D model with anisotropy (4, 1, 1)."""
    from ij_bridge.synthetic import synthetic_nuclei
    from ij_bridge.workflows.stardist import pair_files, split_pairs, train_from_pairs

    assert split_pairs(7, 0.3, seed=1) == split_pairs(7, 0.3, seed=1)
    assert split_pairs(7, 0.3, seed=1) != split_pairs(7, 0.3, seed=2)
    train, val = split_pairs(7, 0.3, seed=1)
    assert sorted(train + val) == list(range(7)) and len(val) == 2
    (tmp_path / "im").mkdir()
    (tmp_path / "mk").mkdir()
    for i in range(2):
        x, y = synthetic_nuclei((16, 32, 32), n_objects=3, radius=(4.0, 6.0), seed=i)
        coords = {"z": np.arange(16) * 2.0, "y": np.arange(32) * PIXEL, "x": np.arange(32) * PIXEL}
        imwrite(tmp_path / "im" / f"s{i}.tif", xr.DataArray(x.astype(np.float32), dims=("z", "y", "x"),
                                                           coords=coords))
        imwrite(tmp_path / "mk" / f"s{i}.tif", y.astype(np.uint16), dims=("z", "y", "x"))
    assert [p[0].name for p in pair_files(tmp_path / "im", tmp_path / "mk")] == ["s0.tif", "s1.tif"]
    lines = []
    model = train_from_pairs(tmp_path / "im", tmp_path / "mk", patch_size=(8, 16, 16), n_rays=8,
                             epochs=1, steps_per_epoch=1, batch_size=1, seed=3, log=lines.append,
                             device="cpu")
    assert model.ndim == 3 and tuple(model.config.anisotropy) == (4.0, 1.0, 1.0)
    assert model.config.seed == 3
    assert any("validating on 1" in line and "anisotropy (4.0, 1.0, 1.0)" in line for line in lines), lines
    with pytest.raises(ValueError, match="does not fit the smallest image"):
        train_from_pairs(tmp_path / "im", tmp_path / "mk", patch_size=(32, 64, 64), fit_patch=False,
                         epochs=1, steps_per_epoch=1)
