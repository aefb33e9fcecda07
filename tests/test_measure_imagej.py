"""Measure Labels against ImageJ's own Analyze > Measure on the same ROIs (real JVM), and
Measure Labels / Segmentation QC on calibrated stacks from macros.

The labels become ROIs with ``ij_bridge.imagej.rois.labels_to_rois`` (ImageJ's
ThresholdToSelection); ImageJ's ``Analyzer`` measures each with area, mean, standard
deviation, min & max, centroid, center of mass, perimeter, bounding rectangle, fit
ellipse, shape descriptors, Feret's diameter, integrated density, median, skewness and
kurtosis. Every heading ImageJ writes must be a column of ours, with ImageJ's value.

Tolerances: 1e-9 relative (plus 1e-9 absolute) for every column, except
* Major, Minor, AR, Round: 1e-5 relative, Angle: 0.01 degree. ImageJ's EllipseFitter uses
  0.08333333 for 1/12 and clamps near-circular moments at 1e-6; on mirror-symmetric
  objects its angle formula divides a rounding residue of the cross moment by sin(π) and
  can move the axes by a few percent. Those objects (found by flipping the mask) are left
  out of the ellipse columns; our values there are the exact moments.
* Skew, Kurt: objects whose pixels all have one value (e.g. single pixels) are left out:
  the moments are 0/0, NaN here, NaN or ±inf in ImageJ by rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipse

from ij_bridge.measure import IMAGEJ_COLUMNS, regionprops_table, to_imagej_columns

pytestmark = pytest.mark.imagej

_ELLIPSE = ("Major", "Minor", "AR", "Round", "Angle")


def _labels(seed: int) -> np.ndarray:
    """Rotated ellipses of 2-18 px, irregular blobs, a rectangle and a label with a hole."""
    rng = np.random.default_rng(seed)
    h, w = 150, 200
    lbl = np.zeros((h, w), np.int32)
    k = 0
    for i in range(3):
        for j in range(4):
            k += 1
            rr, cc = ellipse(25 + 50 * i + rng.uniform(-2, 2), 25 + 50 * j + rng.uniform(-2, 2),
                             rng.uniform(2, 18), rng.uniform(2, 18), rotation=rng.uniform(0, np.pi),
                             shape=lbl.shape)
            lbl[rr, cc] = k
    noise = ndi.gaussian_filter(rng.normal(size=(h, w)), 3)
    blobs, _ = ndi.label((noise > 0.08) & (lbl == 0))
    lbl[blobs > 0] = blobs[blobs > 0] + k
    lbl[5:15, 188:198] = 999          # a rectangle: a rectangle ROI in ImageJ
    lbl[138:148, 2:14] = 998          # a label with a hole: a composite ROI
    lbl[141:144, 5:9] = 0
    return lbl


def _mirror_symmetric(lbl: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.zeros(len(labels), bool)
    for i, lab in enumerate(labels):
        sl = ndi.find_objects((lbl == lab).astype(np.int32))[0]
        m = lbl[sl] == lab
        out[i] = bool((m == m[:, ::-1]).all() or (m == m[::-1]).all())
    return out


def _imagej_measure(lbl, img, pixel, unit, origin_xy):
    import jpype

    from ij_bridge.imagej.images import to_imageplus
    from ij_bridge.imagej.rois import labels_to_rois
    from ij_bridge.imagej.tables import results_to_dataframe

    M = jpype.JClass("ij.measure.Measurements")
    Analyzer = jpype.JClass("ij.plugin.filter.Analyzer")
    ResultsTable = jpype.JClass("ij.measure.ResultsTable")
    flags = (M.AREA | M.MEAN | M.STD_DEV | M.MIN_MAX | M.CENTROID | M.CENTER_OF_MASS
             | M.PERIMETER | M.RECT | M.ELLIPSE | M.SHAPE_DESCRIPTORS | M.FERET
             | M.INTEGRATED_DENSITY | M.MEDIAN | M.SKEWNESS | M.KURTOSIS)
    imp = to_imageplus(img, title="signal")
    cal = imp.getCalibration()
    cal.pixelWidth = cal.pixelHeight = pixel
    cal.setUnit(unit)
    cal.xOrigin, cal.yOrigin = origin_xy
    rois = labels_to_rois(lbl)
    rt = ResultsTable()
    for roi in rois:
        imp.setRoi(roi)
        Analyzer(imp, flags, rt).measure()
    ref = results_to_dataframe(rt, image=imp)
    return ref.reset_index(drop=True), sorted({str(r.getTypeAsString()) for r in rois})


@pytest.mark.parametrize("seed, dtype, pixel", [(0, np.float32, 1.0), (1, np.uint16, 0.325),
                                                (2, np.uint8, 0.7)])
def test_columns_and_values_are_imagejs(clean_imagej, seed, dtype, pixel):
    lbl = _labels(seed)
    rng = np.random.default_rng(seed)
    img = (rng.normal(100, 30, lbl.shape).clip(0, 250)).astype(dtype)
    types = _compare_with_imagej(lbl, img, pixel)
    assert types == ["Composite", "Rectangle", "Traced"]  # every kind of ROI was measured


def test_real_nuclei_are_imagejs(clean_imagej, shared_data):
    """The 73 annotated nuclei of the shared data set and their fluorescence image."""
    import tifffile

    lbl = tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif").astype(np.int32)
    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")
    _compare_with_imagej(lbl, img, 0.5)


def _compare_with_imagej(lbl, img, pixel):
    origin_xy = (3.0, -2.0)
    ref, types = _imagej_measure(lbl, img, pixel, "µm", origin_xy)
    ours = to_imagej_columns(regionprops_table(lbl, img, spacing=pixel, units="µm",
                                               origin=origin_xy[::-1]))
    assert len(ours) == len(ref) == len(np.unique(lbl)) - 1
    missing = [h for h in ref.columns if h not in ours.columns]
    assert missing == []
    # every ImageJ heading is ours, in ImageJ's order
    assert [c for c in ours.columns if c in ref.columns] == list(ref.columns)
    symmetric = _mirror_symmetric(lbl, ours["Label"].to_numpy())
    flat = (ours["StdDev"] == 0).to_numpy()
    for h in ref.columns:
        a, b = ours[h].to_numpy(float), ref[h].to_numpy(float)
        keep = np.ones(len(a), bool)
        rtol, atol = 1e-9, 1e-9
        if h in _ELLIPSE:
            keep = ~symmetric
            rtol, atol = (0.0, 0.01) if h == "Angle" else (1e-5, 0.0)
        if h in ("Skew", "Kurt"):
            keep = ~flat
        np.testing.assert_allclose(a[keep], b[keep], rtol=rtol, atol=atol, err_msg=h)
    assert symmetric.sum() < len(symmetric) / 3  # the exclusions leave most objects compared
    # units: ImageJ's headings from the image's calibration equal ours
    for h in ("Area", "X", "Perim.", "Feret", "Angle", "Circ."):
        assert ref.attrs["units"][h] == ours.attrs["units"][h], h
    return types


def test_macro_reads_imagej_names(clean_imagej):
    """A macro after Measure Labels: getResult("Area", 0) and friends are the values."""
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.images import to_imageplus
    from ij_bridge.imagej.tables import results_to_dataframe

    install_commands()
    lbl = _labels(3).astype(np.uint16)
    imp = to_imageplus(lbl, title="labels")
    cal = imp.getCalibration()
    cal.pixelWidth = cal.pixelHeight = 0.5
    cal.setUnit("µm")
    imp.show()
    r = run_macro('run("Measure Labels", "labels=labels");\n'
                  'print(nResults + " " + getResult("Label", 0) + " " + getResult("Area", 0) + " "'
                  ' + getResult("Perim.", 0) + " " + getResult("Circ.", 0));')
    assert r.ok, r.error
    n, label, area, perim, circ = r.output.strip().splitlines()[-1].split()
    expected = regionprops_table(lbl, spacing=0.5).iloc[0]
    assert int(n) == len(np.unique(lbl)) - 1 and int(float(label)) == expected.label
    assert float(area) == pytest.approx(expected.area, rel=1e-4)
    assert float(perim) == pytest.approx(expected.perimeter, rel=1e-4)
    assert float(circ) == pytest.approx(expected.circularity, rel=1e-3)
    df = results_to_dataframe()
    assert df["Label"].dtype == np.int64
    assert df.attrs["units"]["Area"] == "µm^2" and df.attrs["units"]["Perim."] == "µm"
    assert set(df.columns) <= set(IMAGEJ_COLUMNS.values())


# --------------------------------------------------------------------------- 3D, from macros
def _stack(arr, title, spacing=(2.0, 0.5, 0.5), t=False):
    import xarray as xr

    from ij_bridge.imagej.images import to_imageplus

    dims = (("t",) if t else ()) + ("z", "y", "x")
    off = 1 if t else 0
    coords = {d: np.arange(arr.shape[i + off]) * s for i, (d, s) in enumerate(zip("zyx", spacing))}
    da = xr.DataArray(arr, dims=dims, coords=coords,
                      attrs={"units": {"x": "µm", "y": "µm", "z": "µm"}, "title": title})
    imp = to_imageplus(da, title)
    imp.show()
    return imp


def _two_solids():
    """A ball (r 6 µm) and an oblate spheroid (12 x 12 x 6 µm) in voxels of 2 x 0.5 x 0.5 µm."""
    z, y, x = np.meshgrid(np.arange(16) * 2.0, np.arange(64) * 0.5, np.arange(96) * 0.5, indexing="ij")
    lbl = np.zeros(z.shape, np.uint16)
    lbl[((z - 15) ** 2 + (y - 16) ** 2 + (x - 10) ** 2) <= 36] = 1
    lbl[((z - 15) / 6) ** 2 + ((y - 16) / 12) ** 2 + ((x - 32) / 12) ** 2 <= 1] = 2
    return lbl


def test_measure_labels_on_a_calibrated_stack(clean_imagej):
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.tables import results_to_dataframe

    install_commands()
    lbl = _two_solids()
    signal = (lbl * 10 + 5).astype(np.float32)
    _stack(lbl, "cells3d")
    _stack(signal, "signal3d")
    r = run_macro('run("Measure Labels", "labels=cells3d intensity=signal3d");\n'
                  'print(getResult("Volume", 1) + " " + getResult("Z", 1));')
    assert r.ok, r.error
    df = results_to_dataframe()
    # 3D headings, the units of the stack's calibration
    for h in ("Label", "Volume", "Surface", "Sphericity", "X", "Y", "Z", "XM", "ZM", "BX", "BY",
              "BZ", "Width", "Height", "Depth", "EqDiameter", "Mean", "IntDen", "Median"):
        assert h in df.columns, h
    assert df.attrs["units"]["Volume"] == "µm^3" and df.attrs["units"]["Surface"] == "µm^2"
    assert df.attrs["units"]["Z"] == "µm"
    # the same numbers as the Python API on the same calibrated array
    api = to_imagej_columns(regionprops_table(lbl, signal, spacing=(2.0, 0.5, 0.5), units="µm"))
    np.testing.assert_allclose(df[api.columns].to_numpy(float), api.to_numpy(float), rtol=1e-6)
    # and near the closed forms (tolerances in test_measure.py); here only 6-7 slices of 2 µm
    # cross each solid and their poles lie on slice centres, the hardest case: surface +6 %
    np.testing.assert_allclose(df["Volume"], [4 / 3 * np.pi * 6**3, 4 / 3 * np.pi * 12 * 12 * 6], rtol=0.03)
    oblate = 2 * np.pi * 144 * (1 + 0.25 / np.sqrt(0.75) * np.arctanh(np.sqrt(0.75)))
    np.testing.assert_allclose(df["Surface"], [4 * np.pi * 36, oblate], rtol=0.07)
    assert df["Z"].tolist() == pytest.approx([16.0, 16.0])  # centre 15 µm + half a slice
    vol, z = map(float, r.output.strip().splitlines()[-1].split())
    assert vol == pytest.approx(df["Volume"][1], rel=1e-4) and z == pytest.approx(16.0)


def test_measure_labels_on_a_time_series_of_stacks(clean_imagej):
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.tables import results_to_dataframe

    install_commands()
    lbl = _two_solids()
    series = np.stack([lbl, np.where(lbl == 2, 5, 0).astype(np.uint16)])
    _stack(series, "cells4d", t=True)
    r = run_macro('run("Measure Labels", "labels=cells4d");')
    assert r.ok, r.error
    df = results_to_dataframe()
    assert df["Frame"].tolist() == [1, 1, 2] and df["Frame"].dtype == np.int64
    assert df["Label"].tolist() == [1, 2, 5]
    assert df["Volume"][2] == df["Volume"][1]


def test_segmentation_qc_on_a_calibrated_stack(clean_imagej):
    """3D matching and distances in µm: the prediction is the truth one slice (2 µm) higher."""
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.tables import results_to_dataframe
    from ij_bridge.metrics import segmentation_qc

    install_commands()
    truth = _two_solids()
    shifted = np.zeros_like(truth)
    shifted[1:] = truth[:-1]
    extra = shifted.copy()
    extra[1:3, 50:54, 80:84] = 7  # a false positive
    _stack(truth, "truth3d")
    _stack(shifted, "shifted3d")
    _stack(extra, "extra3d")
    r = run_macro('run("Segmentation QC", "prediction=shifted3d truth=truth3d threshold=0.5");')
    assert r.ok, r.error
    row = results_to_dataframe().iloc[0]
    assert (row["tp"], row["fp"], row["fn"]) == (2, 0, 0)
    # the surfaces are one slice apart at the poles: Hausdorff = the z step, in µm
    assert row["hausdorff_distance"] == pytest.approx(2.0)
    r = run_macro('run("Segmentation QC", "prediction=extra3d truth=truth3d threshold=0.5");')
    assert r.ok, r.error
    df = results_to_dataframe()
    row = df.iloc[0]
    assert (row["tp"], row["fp"], row["fn"]) == (2, 1, 0)
    assert df.attrs["units"]["hausdorff_distance"] == "µm"
    assert df.attrs["units"]["hamming_distance"] == "µm^3"
    api = segmentation_qc(truth, extra, thresh=0.5, spacing=(2.0, 0.5, 0.5), unit="µm")
    for c in ("jaccard", "dice", "hamming_distance", "hausdorff_distance", "hausdorff_distance_95",
              "mean_contour_distance", "mean_matched_score"):
        assert row[c] == pytest.approx(api[c].iloc[0]), c


def test_uncalibrated_stack_says_voxels(clean_imagej):
    from ij_bridge.commands import install_commands, run_macro
    from ij_bridge.imagej.images import to_imageplus
    from ij_bridge.imagej.tables import results_to_dataframe

    install_commands()
    lbl = np.zeros((5, 20, 20), np.uint16)
    lbl[1:4, 5:10, 5:10] = 3
    to_imageplus(lbl, "raw3d", dims=("z", "y", "x")).show()
    r = run_macro('run("Measure Labels", "labels=raw3d");')
    assert r.ok, r.error
    assert "no spatial calibration: volumes are in voxels" in r.output
    df = results_to_dataframe()
    assert df["Volume"].tolist() == [75.0] and df.attrs["units"]["Volume"] == "pixel^3"
