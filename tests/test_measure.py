"""Tests for ij_bridge.measure.regionprops_table (no Java needed).

Reference values marked "ImageJ 1.53t" were measured with Analyze > Measure on the
outline ImageJ's ThresholdToSelection makes of the same pixels (area centroid perimeter fit
shape); tests/test_measure_imagej.py compares every column with ImageJ itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from ij_bridge.measure import regionprops_table


def _two_ellipses() -> np.ndarray:
    lbl = np.zeros((80, 100), np.int32)
    rr, cc = ellipse(40, 30, 7, 18, rotation=np.deg2rad(25), shape=lbl.shape)
    lbl[rr, cc] = 1
    rr, cc = ellipse(40, 75, 12, 5, rotation=np.deg2rad(-60), shape=lbl.shape)
    lbl[rr, cc] = 2
    return lbl


def test_matches_imagej_on_rotated_ellipses():
    df = regionprops_table(_two_ellipses())
    # ImageJ 1.53t: Area, X, Y, Major, Minor, Angle, Solidity
    ref = [
        (389, 30.5, 40.5, 35.711876, 13.869061, 24.670652, 0.939614),
        (193, 75.5, 40.5, 24.061557, 10.212774, 30.979542, 0.910377),
    ]
    for row, r in zip(df.itertuples(), ref):
        got = (row.area, row.centroid_x, row.centroid_y, row.major, row.minor, row.angle, row.solidity)
        np.testing.assert_allclose(got, r, atol=2e-6)
    # ImageJ's traced perimeter, circularity and Feret values
    np.testing.assert_allclose(df["perimeter"], [85.254834, 57.941125], atol=2e-6)
    np.testing.assert_allclose(df["circularity"], [0.672545, 0.722426], atol=2e-6)
    np.testing.assert_allclose(df["feret"], [37.121422, 24.698178], atol=2e-6)
    np.testing.assert_allclose(df["feret_angle"], [27.255328, 31.759480], atol=2e-6)
    np.testing.assert_allclose(df["min_feret"], [14.758049, 11.180340], atol=2e-6)
    assert df[["bbox_x", "bbox_y", "bbox_width", "bbox_height"]].values.tolist() == [
        [14, 31, 33, 19], [65, 33, 21, 15]]


def test_calibration_with_origin_like_imagej():
    # ImageJ 1.53t, pixel 0.4 um, origin x=10, y=-5 (pixels): X=8.2 Y=18.2 Area=62.24
    df = regionprops_table(_two_ellipses(), spacing=0.4, origin=(-5, 10), units="µm")
    r = df.iloc[0]
    np.testing.assert_allclose([r.area, r.centroid_x, r.centroid_y], [62.24, 8.2, 18.2], atol=1e-9)
    np.testing.assert_allclose([r.major, r.minor], [14.284750, 5.547624], atol=1e-6)
    assert df.attrs["units"]["area"] == "µm^2"
    assert df.attrs["units"]["centroid_x"] == "µm"
    assert df.attrs["units"]["angle"] == "degree"


def test_rectangle_anisotropic_pixels():
    lbl = np.zeros((20, 30), np.uint16)
    lbl[4:10, 5:25] = 7  # 6 rows x 20 cols
    df = regionprops_table(lbl, spacing=(0.5, 0.1), units="µm", imagej_centres=False)
    r = df.iloc[0]
    assert r.label == 7
    assert r.area == pytest.approx(6 * 0.5 * 20 * 0.1)  # 3 x 2 um
    assert r.centroid_x == pytest.approx(14.5 * 0.1)
    assert r.centroid_y == pytest.approx(6.5 * 0.5)
    # physical box is 2 um wide (x) and 3 um tall (y): major axis along y
    assert r.angle == pytest.approx(90.0)
    assert r.major / r.minor == pytest.approx(1.5, rel=1e-6)
    assert r.solidity == pytest.approx(1.0)
    # ImageJ makes a rectangle ROI of it: perimeter without corner correction
    assert r.perimeter == pytest.approx(2 * (3 + 2))
    assert (r.bbox_x, r.bbox_y, r.bbox_width, r.bbox_height) == pytest.approx((0.45, 1.75, 2, 3))
    assert r.feret == pytest.approx(np.hypot(2, 3)) and r.min_feret == pytest.approx(2)


def test_traced_perimeter_counts_corners_as_imagej():
    # small rectangles stay traced outlines in ImageJ (under 16 pixels around). A corner is
    # counted where the edge into it is longer than 1, or the previous vertex was not counted
    lbl = np.zeros((8, 8), np.int32)
    lbl[1:3, 1:3] = 1  # edges 2, 2, 2, 2: 4 corners
    lbl[4, 4] = 2  # edges 1, 1, 1, 1: 2 corners
    lbl[6, 1:4] = 3  # edges 3, 1, 3, 1: 2 corners
    df = regionprops_table(lbl)
    cut = 2 - np.sqrt(2)
    np.testing.assert_allclose(df["perimeter"], [8 - 4 * cut, 4 - 2 * cut, 8 - 2 * cut])
    assert df["circularity"].tolist()[:2] == [1.0, 1.0]  # capped
    # anisotropic pixels: edges in physical units, each corner cuts pw + ph - hypot(pw, ph)
    r = regionprops_table(lbl, spacing=(0.5, 0.2)).iloc[0]
    assert r.perimeter == pytest.approx(4 * 0.2 + 4 * 0.5 - 4 * (0.7 - np.hypot(0.5, 0.2)))
    # a label with a hole: a composite ROI in ImageJ, both outlines traced (ImageJ 1.53t: 71.313708)
    ring = np.zeros((20, 20), np.int32)
    ring[2:17, 2:17] = 4
    ring[7:11, 7:11] = 0
    r = regionprops_table(ring).iloc[0]
    assert r.area == 15 * 15 - 16
    assert r.perimeter == pytest.approx(71.313708, abs=1e-6)
    assert r.solidity == pytest.approx(209 / 225)


def test_diagonal_pieces_are_one_outline():
    # pixels touching at a corner share one outline, as in ImageJ (8-connected): 11.313708
    lbl = np.zeros((8, 8), np.int32)
    lbl[1:3, 1:3] = 1
    lbl[3:5, 3:5] = 1
    assert regionprops_table(lbl).iloc[0].perimeter == pytest.approx(11.313708, abs=1e-6)


def test_disk_area_and_circularity():
    lbl = np.zeros((101, 101), np.int32)
    rr, cc = disk((50, 50), 40)
    lbl[rr, cc] = 1
    df = regionprops_table(lbl, spacing=0.2)
    r = df.iloc[0]
    assert r.area == pytest.approx(np.pi * 8.0**2, rel=0.01)
    # ImageJ's traced perimeter over-estimates a digitised circle by a few percent
    assert 2 * np.pi * 8.0 < r.perimeter < 1.05 * 2 * np.pi * 8.0
    assert 0.9 < r.circularity <= 1.0
    assert r.feret == pytest.approx(16.0, rel=0.03) and r.min_feret == pytest.approx(16.0, rel=0.03)
    assert r.aspect_ratio == pytest.approx(1.0, abs=1e-3) and r.roundness == pytest.approx(1.0, abs=1e-3)
    assert r.major == pytest.approx(r.minor, rel=1e-3)
    assert r.angle == 0.0


def test_intensity_columns_and_single_pixel():
    lbl = np.zeros((10, 10), np.int32)
    lbl[1:3, 1:3] = 5
    lbl[8, 8] = 9
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    df = regionprops_table(lbl, img)
    assert df["label"].tolist() == [5, 9]
    vals = img[1:3, 1:3].ravel()
    r = df.iloc[0]
    assert (r["mean"], r["min"], r["max"]) == (vals.mean(), vals.min(), vals.max())
    assert r["std"] == pytest.approx(vals.std(ddof=1))  # ImageJ: sample SD
    assert r["median"] == 16.5  # float image: the mean of the two middle values (12, 21)
    assert r["raw_int_den"] == vals.sum() and r["int_den"] == 4 * vals.mean()
    d = vals - vals.mean()
    assert r["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert r["kurtosis"] == pytest.approx(np.mean(d**4) / np.mean(d**2) ** 2 - 3)
    assert r["com_x"] == pytest.approx((vals * [1, 2, 1, 2]).sum() / vals.sum() + 0.5)
    ints = regionprops_table(lbl, img.astype(np.uint16))
    assert ints["median"].iloc[0] == 21.0  # integer image: the upper middle, as ImageJ's histogram
    s = df.iloc[1]
    assert s["std"] == 0.0 and s["mean"] == 88.0
    assert np.isnan(s["skewness"])  # no spread (ImageJ: NaN or ±inf by rounding)
    assert s.circularity == 1.0  # capped like ImageJ
    assert s.centroid_x == 8.5 and s.centroid_y == 8.5


def _ellipsoid(semi, spacing, shift, shape):
    """Voxels whose centre lies in the ellipsoid with semi-axes ``semi`` (z, y, x, physical),
    centred at the middle of the array moved by ``shift`` voxels."""
    g = np.meshgrid(*[(np.arange(n) - (n - 1) / 2 - o) * s for n, s, o in zip(shape, spacing, shift)],
                    indexing="ij")
    return (sum((gi / a) ** 2 for gi, a in zip(g, semi)) <= 1).astype(np.uint16)


def _oblate_area(a, c):
    """Exact surface of the spheroid with equatorial semi-axis a > polar semi-axis c."""
    e = np.sqrt(1 - c * c / (a * a))
    return 2 * np.pi * a * a * (1 + (1 - e * e) / e * np.arctanh(e))


def _thomsen_area(a, b, c, p=1.6075):
    """Knud Thomsen's approximation of an ellipsoid's surface (relative error <= 1.061 %)."""
    return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


# (semi-axes z, y, x in µm, voxel size z, y, x in µm, array shape, exact surface)
_SOLIDS = {
    "ball": ((10, 10, 10), (1, 1, 1), (26, 26, 26), 4 * np.pi * 100),
    "ball, z step 4x": ((8, 8, 8), (2, 0.5, 0.5), (12, 40, 40), 4 * np.pi * 64),
    "oblate spheroid": ((6, 12, 12), (1.5, 0.75, 0.75), (12, 36, 36), _oblate_area(12, 6)),
    "ellipsoid": ((5, 9, 13), (1, 0.5, 0.5), (14, 42, 58), _thomsen_area(5, 9, 13)),
}


@pytest.mark.parametrize("name", list(_SOLIDS))
def test_3d_volume_and_surface_against_closed_forms(name):
    """Volume and surface of voxelised solids against the formulas, anisotropic voxels included.

    Tolerances (max over 3 random sub-voxel placements of the centre; measured over 5):
    volume 2 % (observed 1.2 %): the voxel count errs by the partial voxels along the surface,
    which mostly cancel; their net share is of order (voxel size / radius)^2 for smooth solids.
    Surface 4 % (observed -0.8 % to +3.5 %, the most for the ball 4 voxels high in z): marching
    cubes on the 0.75-voxel Gaussian of the mask follows the surface within a fraction of a
    voxel; what remains are the coarse z steps and the blur's shrinkage of curved parts,
    ~σ²/R. Thomsen's formula adds up to 1.06 % for the triaxial ellipsoid.
    """
    semi, sp, shape, area = _SOLIDS[name]
    volume = 4 / 3 * np.pi * np.prod(semi)
    rng = np.random.default_rng(1)
    for _ in range(3):
        shift = rng.uniform(-0.5, 0.5, 3)
        df = regionprops_table(_ellipsoid(semi, sp, shift, shape), spacing=sp, units="µm")
        r = df.iloc[0]
        assert r.volume == pytest.approx(volume, rel=0.02)
        assert r.surface_area == pytest.approx(area, rel=0.04)
        exact_sphericity = np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area
        assert r.sphericity == pytest.approx(exact_sphericity, abs=0.04)
        assert r.equivalent_diameter == pytest.approx(2 * np.prod(semi) ** (1 / 3), rel=0.01)
        assert r.solidity > 0.95
        # the moment ellipsoid's full axes are the solid's
        np.testing.assert_allclose([r.major, r.intermediate, r.minor], 2 * np.sort(semi)[::-1], rtol=0.05)
        # centroid: the array centre moved by the shift (ImageJ centres at i + 0.5)
        centre = [((n - 1) / 2 + o + 0.5) * s for n, s, o in zip(shape, sp, shift)]
        np.testing.assert_allclose([r.centroid_z, r.centroid_y, r.centroid_x], centre,
                                   atol=0.1 * max(sp))
    assert df.attrs["units"]["volume"] == "µm^3" and df.attrs["units"]["surface_area"] == "µm^2"


def test_ball_sphericity_near_one():
    df = regionprops_table(_ellipsoid((10, 10, 10), (1, 1, 1), (0.2, -0.1, 0.3), (26, 26, 26)))
    assert df.iloc[0].sphericity > 0.98


def test_3d_calibration_bbox_intensity():
    lbl = np.zeros((10, 20, 30), np.int32)
    lbl[2:5, 4:10, 6:9] = 7  # 3 slices x 6 rows x 3 columns
    lbl[8, 15, 25] = 2
    img = np.arange(lbl.size, dtype=np.float32).reshape(lbl.shape)
    df = regionprops_table(lbl, img, spacing=(2.0, 0.5, 0.25), origin=(1, 2, 4), units="µm")
    assert df["label"].tolist() == [2, 7]
    r = df.iloc[1]
    assert r.volume == pytest.approx(54 * 2.0 * 0.5 * 0.25)
    # ImageJ calibration: (index + 0.5 - origin) * size, origin in pixels per axis
    assert (r.centroid_x, r.centroid_y, r.centroid_z) == pytest.approx(
        ((7 + 0.5 - 4) * 0.25, (6.5 + 0.5 - 2) * 0.5, (3 + 0.5 - 1) * 2.0))
    assert (r.bbox_x, r.bbox_y, r.bbox_z) == pytest.approx(((6 - 4) * 0.25, (4 - 2) * 0.5, (2 - 1) * 2.0))
    assert (r.bbox_width, r.bbox_height, r.bbox_depth) == pytest.approx((0.75, 3.0, 6.0))
    vals = img[lbl == 7]
    assert (r["mean"], r["min"], r["max"], r["median"]) == pytest.approx(
        (vals.mean(), vals.min(), vals.max(), np.median(vals)))
    assert r.raw_int_den == pytest.approx(vals.sum()) and r.int_den == pytest.approx(r.volume * vals.mean())
    zz, yy, xx = np.nonzero(lbl == 7)
    assert r.com_z == pytest.approx(((zz * vals).sum() / vals.sum() + 0.5 - 1) * 2.0)
    assert df.attrs["units"]["bbox_depth"] == "µm" and df.attrs["units"]["int_den"] == "µm^3·intensity"
    # a one-voxel object has a finite surface and volume
    one = df.iloc[0]
    assert one.volume == pytest.approx(0.25) and np.isfinite(one.surface_area) and one.surface_area > 0


def test_empty_and_noncontiguous_labels():
    df = regionprops_table(np.zeros((5, 5), np.uint8))
    assert len(df) == 0 and "label" in df.columns
    lbl = np.zeros((5, 5), np.int64)
    lbl[0, 0] = 1000
    lbl[4, 4] = 3
    assert regionprops_table(lbl)["label"].tolist() == [3, 1000]


def test_xarray_calibration_is_read():
    xr = pytest.importorskip("xarray")
    lbl = np.zeros((10, 12), np.int32)
    lbl[2:4, 3:6] = 1
    da = xr.DataArray(lbl, dims=("y", "x"), coords={"y": (np.arange(10) - 2) * 0.5, "x": np.arange(12) * 0.25})
    da.coords["x"].attrs["units"] = "µm"
    da.coords["y"].attrs["units"] = "µm"
    r = regionprops_table(da)
    assert r.attrs["units"]["area"] == "µm^2"
    assert r.attrs["origin"] == (2.0, 0.0)
    assert r.iloc[0].area == pytest.approx(6 * 0.125)
    assert r.iloc[0].centroid_y == pytest.approx((3.0 - 2) * 0.5)  # ImageJ centre of rows 2,3 = 3.0


def test_bad_input_rejected():
    lbl = np.zeros((6, 6), np.int32)
    with pytest.raises(ValueError, match="negative"):
        regionprops_table(lbl - 1)
    with pytest.raises(ValueError, match="non-integer"):
        regionprops_table(lbl + 0.5)
    with pytest.raises(ValueError, match="shape"):
        regionprops_table(lbl, np.zeros((6, 7)))
    with pytest.raises(ValueError, match="spacing"):
        regionprops_table(lbl, spacing=(1, 2, 3))
    with pytest.raises(ValueError, match="positive"):
        regionprops_table(lbl, spacing=(1, 0))
    with pytest.raises(ValueError, match="2D"):
        regionprops_table(np.zeros(5, np.int32))


def test_imagej_column_names():
    from ij_bridge.measure import from_imagej_columns, to_imagej_columns

    lbl = np.zeros((6, 6), np.int32)
    lbl[1:4, 1:4] = 2
    df = to_imagej_columns(regionprops_table(lbl, np.ones((6, 6)), spacing=0.5, units="µm"))
    # ImageJ's headings in the order of its Results table
    assert list(df.columns) == [
        "Label", "Area", "Mean", "StdDev", "Min", "Max", "X", "Y", "XM", "YM", "Perim.", "BX",
        "BY", "Width", "Height", "Major", "Minor", "Angle", "Circ.", "Feret", "IntDen", "Median",
        "Skew", "Kurt", "RawIntDen", "FeretX", "FeretY", "FeretAngle", "MinFeret", "AR", "Round",
        "Solidity"]
    assert df.attrs["units"]["Area"] == "µm^2"
    assert df["Label"].dtype == np.int64
    back = from_imagej_columns(df)
    assert list(back.columns[:3]) == ["label", "area", "mean"] and back.attrs["units"]["area"] == "µm^2"
    d3 = to_imagej_columns(regionprops_table(np.pad(lbl[None], 1), np.ones((3, 8, 8)), units="µm"))
    assert list(d3.columns) == [
        "Label", "Volume", "Mean", "StdDev", "Min", "Max", "X", "Y", "Z", "XM", "YM", "ZM",
        "Surface", "BX", "BY", "BZ", "Width", "Height", "Depth", "Major", "Intermediate", "Minor",
        "Sphericity", "EqDiameter", "IntDen", "Median", "Skew", "Kurt", "RawIntDen", "Solidity"]
