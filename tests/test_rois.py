"""ROIs between ImageJ 1.x and Python: conversions, labels, ROI Manager, Overlay, files.

Every test runs against the real Debian ImageJ in the shared virtual-mode JVM
(``ij`` fixture); the headless behaviour is checked in a subprocess.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile

from conftest import run_python

pytestmark = pytest.mark.imagej


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def J(ij):
    """Java classes used by the tests."""
    import jpype

    names = {
        "Roi": "ij.gui.Roi", "OvalRoi": "ij.gui.OvalRoi", "PolygonRoi": "ij.gui.PolygonRoi",
        "Line": "ij.gui.Line", "PointRoi": "ij.gui.PointRoi", "ShapeRoi": "ij.gui.ShapeRoi",
        "EllipseRoi": "ij.gui.EllipseRoi", "Color": "java.awt.Color",
        "ImagePlus": "ij.ImagePlus", "ImageStack": "ij.ImageStack",
        "FloatProcessor": "ij.process.FloatProcessor", "RoiEncoder": "ij.io.RoiEncoder",
        "RoiManager": "ij.plugin.frame.RoiManager",
    }
    ns = type("J", (), {k: jpype.JClass(v) for k, v in names.items()})
    ns.jpype = jpype
    return ns


@pytest.fixture(scope="module")
def R(ij):
    from ij_bridge.imagej import rois

    return rois


def float_imp(J, array: np.ndarray, nchannels: int = 1, nslices: int | None = None,
              nframes: int = 1):
    """A 32-bit ImagePlus from a (y, x) or (n, y, x) array (stack order c, z, t)."""
    a = np.asarray(array, dtype=np.float32)
    planes = a[None] if a.ndim == 2 else a
    h, w = planes.shape[-2:]
    stack = J.ImageStack(w, h)
    for p in planes:
        stack.addSlice(J.FloatProcessor(w, h, J.jpype.JArray(J.jpype.JFloat)(p.ravel())))
    imp = J.ImagePlus("test", stack)
    if nslices is None:
        nslices = len(planes) // (nchannels * nframes)
    imp.setDimensions(nchannels, nslices, nframes)
    if nchannels * nframes > 1:
        imp.setOpenAsHyperStack(True)
    return imp


def java_points(roi) -> np.ndarray:
    fp = roi.getFloatPolygon()
    n = int(fp.npoints)
    return np.stack([np.asarray(fp.xpoints)[:n], np.asarray(fp.ypoints)[:n]], axis=1)


def java_mask(roi) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    b = roi.getBounds()
    m = roi.getMask()
    arr = None if m is None else np.asarray(m.getPixels()).reshape(m.getHeight(), m.getWidth()) != 0
    return (int(b.x), int(b.y), int(b.width), int(b.height)), arr


def imagej_decode(J, ir: roifile.ImagejRoi):
    """ImageJ's own RoiDecoder applied to roifile's bytes (no fix-ups)."""
    jp = J.jpype
    data = jp.JArray(jp.JByte)(np.frombuffer(ir.tobytes(), np.int8))
    return jp.JClass("ij.io.RoiDecoder")(data, None).getRoi()


def write_roi_zip(path: Path, rois: list[roifile.ImagejRoi]) -> None:
    """Write a ROI zip through roifile, replacing (never appending to) an existing file."""
    tmp = path.with_suffix(".tmp.zip")
    roifile.roiwrite(tmp, rois, mode="w")
    tmp.replace(path)


def object_stats(labels: np.ndarray, image: np.ndarray) -> dict[int, tuple[int, float]]:
    """Per-label pixel count and mean, vectorised."""
    lab = labels.ravel()
    counts = np.bincount(lab)
    sums = np.bincount(lab, weights=image.ravel().astype(np.float64))
    return {int(i): (int(counts[i]), sums[i] / counts[i]) for i in np.flatnonzero(counts) if i > 0}


@pytest.fixture(scope="module")
def nuclei(shared_data):
    import tifffile

    mask = tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif")
    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")
    return mask, img


def constructed_labels() -> np.ndarray:
    """Objects that are hard for outline tracing."""
    L = np.zeros((48, 60), np.int32)
    L[0:12, 0:12] = 3                         # touches top-left corner ...
    L[4:8, 4:8] = 0                           # ... with a hole
    L[20:25, 20:25] = 9                       # two pieces ...
    L[30:35, 50:60] = 9                       # ... one touching the right border
    L[14, 14] = 5                             # diagonal neighbours only
    L[15, 15] = 5
    L[16, 16] = 5
    L[47, :] = 7                              # the whole bottom row
    L[40, 3] = 11                             # a single pixel
    yy, xx = np.mgrid[:48, :60]
    ring = (np.hypot(yy - 22, xx - 42) < 8) & (np.hypot(yy - 22, xx - 42) >= 3)
    L[ring] = 12                              # a ring (hole in the middle)
    L[22, 42] = 13                            # an object inside the ring's hole
    L[0:3, 30:33] = 2 ** 20                   # a large label value
    return L


# --------------------------------------------------------------------------- single ROIs
def make_roi(J, kind: str):
    """An ImageJ ROI of each kind, with the in-memory type and the .roi file type."""
    jp = J.jpype
    fa = jp.JArray(jp.JFloat)
    if kind == "rectangle":
        return J.Roi(10, 20, 30, 40), 0, roifile.ROI_TYPE.RECT
    if kind == "rounded":
        return J.Roi(10, 20, 30, 40, 12), 0, roifile.ROI_TYPE.RECT
    if kind == "oval":
        return J.OvalRoi(5, 6, 21, 13), 1, roifile.ROI_TYPE.OVAL
    xs, ys = fa([3.0, 40.0, 35.0, 8.0]), fa([4.0, 6.0, 30.0, 25.0])
    if kind == "polygon":
        return J.PolygonRoi(xs, ys, 4, J.Roi.POLYGON), 2, roifile.ROI_TYPE.POLYGON
    if kind == "polygon-subpixel":
        return (J.PolygonRoi(fa([3.25, 40.5, 35.75, 8.125]), fa([4.5, 6.25, 30.5, 25.75]), 4,
                             J.Roi.POLYGON), 2, roifile.ROI_TYPE.POLYGON)
    if kind == "freehand":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return (J.PolygonRoi(fa(30 + 12 * np.cos(t)), fa(30 + 9 * np.sin(t)), 40, J.Roi.FREEROI),
                3, roifile.ROI_TYPE.FREEHAND)
    if kind == "traced":
        return (J.PolygonRoi(fa([2.0, 12.0, 12.0, 7.0, 7.0, 2.0]), fa([2.0, 2.0, 9.0, 9.0, 5.0, 5.0]),
                             6, J.Roi.TRACED_ROI), 4, roifile.ROI_TYPE.TRACED)
    if kind == "line":
        return J.Line(3.5, 4.0, 40.0, 22.5), 5, roifile.ROI_TYPE.LINE
    if kind == "polyline":
        return J.PolygonRoi(xs, ys, 4, J.Roi.POLYLINE), 6, roifile.ROI_TYPE.POLYLINE
    if kind == "freeline":
        return J.PolygonRoi(xs, ys, 4, J.Roi.FREELINE), 7, roifile.ROI_TYPE.FREELINE
    if kind == "angle":
        return J.PolygonRoi(fa([5.0, 20.0, 30.0]), fa([20.0, 5.0, 25.0]), 3, J.Roi.ANGLE), 8, \
            roifile.ROI_TYPE.ANGLE
    if kind == "point":
        return J.PointRoi(7.0, 9.0), 10, roifile.ROI_TYPE.POINT
    if kind == "multipoint":
        return J.PointRoi(fa([1.0, 5.5, 9.0]), fa([2.0, 8.0, 3.5]), 3), 10, roifile.ROI_TYPE.POINT
    if kind == "ellipse":
        return J.EllipseRoi(5.0, 20.0, 35.0, 12.0, 0.5), 3, roifile.ROI_TYPE.FREEHAND
    if kind == "rotated-rect":
        return (J.jpype.JClass("ij.gui.RotatedRectRoi")(5.0, 20.0, 35.0, 12.0, 8.0), 3,
                roifile.ROI_TYPE.FREEHAND)
    if kind == "composite":
        outer = J.ShapeRoi(J.Roi(0, 0, 20, 20))
        hole = J.ShapeRoi(J.OvalRoi(5, 5, 8, 8))
        other = J.ShapeRoi(J.Roi(30, 2, 6, 4))
        return outer.not_(hole).or_(other), 9, roifile.ROI_TYPE.RECT
    raise AssertionError(kind)


KINDS = ["rectangle", "rounded", "oval", "polygon", "polygon-subpixel", "freehand", "traced",
         "line", "polyline", "freeline", "angle", "point", "multipoint", "ellipse", "rotated-rect",
         "composite"]
POLY_KINDS = {"polygon", "polygon-subpixel", "freehand", "traced", "polyline", "freeline",
              "angle", "point", "multipoint"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["hyperstack", "stack", "none"])
def test_roi_round_trip_every_type(J, R, kind, where):
    roi, java_type, file_type = make_roi(J, kind)
    assert roi.getType() == java_type
    roi.setName(f"my {kind} µ")
    if where == "hyperstack":
        roi.setPosition(2, 5, 3)
    elif where == "stack":
        roi.setPosition(J.jpype.JInt(7))
    roi.setStrokeColor(J.Color(255, 0, 128, 200))
    roi.setStrokeWidth(2.5)
    if roi.isArea():
        roi.setFillColor(J.Color(0, 255, 0, 64))

    ir = R.roi_from_java(roi)
    # what roifile sees
    assert isinstance(ir, roifile.ImagejRoi)
    assert ir.roitype == file_type
    assert ir.name == f"my {kind} µ"
    if where == "hyperstack":
        assert (ir.c_position, ir.z_position, ir.t_position) == (2, 5, 3)
    elif where == "stack":
        assert ir.position == 7 and (ir.c_position, ir.z_position, ir.t_position) == (0, 0, 0)
    else:
        assert ir.position == 0 and (ir.c_position, ir.z_position, ir.t_position) == (0, 0, 0)
    assert ir.stroke_color == bytes([200, 255, 0, 128])          # ARGB
    assert ir.stroke_width == 2 and ir.float_stroke_width == pytest.approx(2.5)
    if kind == "rounded":
        assert ir.rounded_rect_arc_size == 12
    if kind == "ellipse":
        assert ir.subtype == roifile.ROI_SUBTYPE.ELLIPSE
    if kind == "rotated-rect":
        assert ir.subtype == roifile.ROI_SUBTYPE.ROTATED_RECT
    if kind == "composite":
        assert ir.composite and len(ir.coordinates(multi=True)) == 3   # outer, hole, other
    if kind in POLY_KINDS:
        # roifile's absolute (x, y) coordinates are ImageJ's
        np.testing.assert_allclose(ir.coordinates(), java_points(roi), atol=1e-5)
    if kind == "rectangle":
        assert (ir.left, ir.top, ir.right, ir.bottom) == (10, 20, 40, 60)

    back = R.roi_to_java(ir)
    assert back.getType() == java_type
    assert str(back.getName()) == f"my {kind} µ"
    assert back.hasHyperStackPosition() == (where == "hyperstack")
    if where == "hyperstack":
        assert (back.getCPosition(), back.getZPosition(), back.getTPosition()) == (2, 5, 3)
    else:
        assert back.getPosition() == (7 if where == "stack" else 0)
    assert back.getStrokeColor().getRGB() == roi.getStrokeColor().getRGB()
    assert back.getStrokeWidth() == pytest.approx(2.5)
    if roi.isArea():
        assert back.getFillColor().getRGB() == roi.getFillColor().getRGB()
    if kind == "rounded":
        assert back.getCornerDiameter() == 12
    assert type(back) is type(roi)                       # same Java class (EllipseRoi, ...)
    np.testing.assert_allclose(java_points(back), java_points(roi), atol=1e-5)
    if roi.isArea():
        (bounds, mask), (bounds0, mask0) = java_mask(back), java_mask(roi)
        assert bounds == bounds0
        assert (mask is None) == (mask0 is None)
        if mask is not None:
            np.testing.assert_array_equal(mask, mask0)
    # the Java encoding survives the trip through roifile byte for byte
    assert bytes(J.RoiEncoder.saveAsByteArray(back)) == bytes(J.RoiEncoder.saveAsByteArray(roi))


def test_python_made_rois_to_java(J, R):
    # trap: roifile's frompoints takes 0-based c/z/t and stores them 1-based, as ImageJ counts
    poly = roifile.ImagejRoi.frompoints([[2.5, 3.0], [20.0, 4.0], [12.0, 18.5]], name="tri",
                                        c=0, z=3, t=1)
    assert (poly.c_position, poly.z_position, poly.t_position) == (1, 4, 2)
    j = R.roi_to_java(poly)
    assert str(j.getName()) == "tri"
    assert (j.getCPosition(), j.getZPosition(), j.getTPosition()) == (1, 4, 2)
    np.testing.assert_allclose(java_points(j), poly.coordinates(), atol=1e-5)

    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=4, top=6, right=14, bottom=9,
                             name="r", position=3)
    j = R.roi_to_java(rect)
    b = j.getBounds()
    assert (j.getType(), b.x, b.y, b.width, b.height, j.getPosition()) == (0, 4, 6, 10, 3, 3)
    # bytes work too, and a Java ROI passes through unchanged
    assert R.roi_to_java(rect.tobytes()).getBounds().equals(b)
    assert R.roi_to_java(j) is j
    assert R.roi_from_java(rect) is rect


def test_unnamed_roi_stays_unnamed(J, R):
    ir = R.roi_from_java(J.OvalRoi(1, 2, 3, 4))
    assert not ir.name
    assert R.roi_to_java(ir).getName() is None


def test_conversion_bad_input(R, ij):
    with pytest.raises(TypeError, match="ij.gui.Roi"):
        R.roi_from_java("not a roi")
    with pytest.raises(TypeError, match="ImagejRoi"):
        R.roi_to_java(42)
    with pytest.raises(ValueError, match="Iout"):
        R.roi_to_java(b"\0" * 80)


# --------------------------------------------------------------------------- labels -> ROIs
def assert_imagej_stats_match(J, rois, labels: np.ndarray, image: np.ndarray):
    """ImageJ's pixel count and mean inside each ROI equal numpy's per label."""
    expected = object_stats(labels, image)
    imp = float_imp(J, image)
    seen = set()
    for roi in rois:
        lab = int(str(roi.getProperty("label")))
        imp.setRoi(roi)
        stats = imp.getStatistics()
        count, mean = expected[lab]
        assert stats.pixelCount == count, (lab, stats.pixelCount, count)
        assert stats.mean == pytest.approx(mean, rel=1e-9, abs=1e-9), lab
        seen.add(lab)
    assert seen == set(expected)


def test_labels_to_rois_statistics_on_nuclei(J, R, nuclei, clean_imagej):
    mask, img = nuclei
    rois = R.labels_to_rois(mask)
    assert len(rois) == 73 == len(np.unique(mask)) - 1
    ids = sorted(int(str(r.getProperty("label"))) for r in rois)
    assert ids == sorted(np.unique(mask)[1:].tolist())
    assert [str(r.getName()) for r in rois] == [f"label-{i:04d}" for i in ids]
    assert all(r.getPosition() == 0 and not r.hasHyperStackPosition() for r in rois)
    assert_imagej_stats_match(J, rois, mask.astype(np.int64), img.astype(np.float32))
    # and measured on the real 16-bit image as the bridge puts it into ImageJ
    import ij_bridge

    imp16 = ij_bridge.to_imageplus(img)
    assert imp16.getBitDepth() == 16
    expected = object_stats(mask.astype(np.int64), img)
    for roi in rois:
        imp16.setRoi(roi)
        stats = imp16.getStatistics()
        count, mean = expected[int(str(roi.getProperty("label")))]
        assert (stats.pixelCount, stats.mean) == (count, pytest.approx(mean, rel=1e-12))


def test_labels_to_rois_statistics_hard_objects(J, R):
    L = constructed_labels()
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, L.shape).astype(np.float32)
    rois = R.labels_to_rois(L)
    by_label = {int(str(r.getProperty("label"))): r for r in rois}
    assert by_label[9].getType() == 9                   # two pieces -> composite
    assert by_label[3].getType() == 9                   # hole -> composite
    assert by_label[12].getType() == 9                  # ring -> composite
    assert str(by_label[2 ** 20].getName()) == "label-1048576"
    assert_imagej_stats_match(J, rois, L, img)


def test_round_trip_labels_2d(R, nuclei):
    mask, _ = nuclei
    back = R.rois_to_labels(R.labels_to_rois(mask), mask.shape)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, mask)
    L = constructed_labels()
    back = R.rois_to_labels(R.labels_to_rois(L), L.shape)
    assert back.dtype == np.uint32                      # 2**20 does not fit 16 bits
    np.testing.assert_array_equal(back, L)
    # through roifile objects (as read from a file) as well
    irs = [R.roi_from_java(r) for r in R.labels_to_rois(L)]
    np.testing.assert_array_equal(R.rois_to_labels(irs, L.shape), L)


def test_labels_edge_cases(R):
    full = np.ones((5, 7), np.uint8)                    # one object filling the image
    np.testing.assert_array_equal(R.rois_to_labels(R.labels_to_rois(full), full.shape), full)
    assert R.labels_to_rois(np.zeros((4, 4), np.uint16)) == []
    boolean = np.zeros((6, 6), bool)
    boolean[1:3, 2:5] = True
    rois = R.labels_to_rois(boolean)
    assert len(rois) == 1 and str(rois[0].getName()) == "label-0001"
    sparse = np.zeros((8, 8), np.int64)                 # huge values: compacted internally
    sparse[1, 1], sparse[5:7, 5:7] = 2 ** 40, 3
    rois = R.labels_to_rois(sparse)
    assert [int(str(r.getProperty("label"))) for r in rois] == [3, 2 ** 40]
    np.testing.assert_array_equal(
        R.rois_to_labels(rois, sparse.shape, dtype=np.int64), sparse)


def test_labels_to_rois_names_and_2d_positions(R):
    L = np.zeros((10, 10), np.uint16)
    L[1:3, 1:3], L[5:8, 5:8] = 4, 12000
    assert [str(r.getName()) for r in R.labels_to_rois(L)] == ["label-00004", "label-12000"]
    assert [str(r.getName()) for r in R.labels_to_rois(L, names="cell")] == \
        ["cell-00004", "cell-12000"]
    assert [str(r.getName()) for r in R.labels_to_rois(L, names={4: "a", 12000: "b"})] == ["a", "b"]
    assert [str(r.getName()) for r in R.labels_to_rois(L, names=lambda i: f"n{i}")] == \
        ["n4", "n12000"]
    with pytest.raises(KeyError, match="12000"):
        R.labels_to_rois(L, names={4: "a"})
    r = R.labels_to_rois(L, position=3)[0]
    assert r.getPosition() == 3 and not r.hasHyperStackPosition()
    r = R.labels_to_rois(L, position=(1, 2, 3))[0]
    assert (r.getCPosition(), r.getZPosition(), r.getTPosition()) == (1, 2, 3)


def stack_labels() -> np.ndarray:
    base = constructed_labels()
    return np.stack([base, np.roll(base, 5, axis=1), np.zeros_like(base), base[::-1]])


def test_labels_to_rois_z_stack_positions_and_stats(J, R):
    L3 = stack_labels()
    rng = np.random.default_rng(1)
    img = rng.normal(50, 10, L3.shape).astype(np.float32)
    rois = R.labels_to_rois(L3)
    names = [str(r.getName()) for r in rois]
    assert "label-0000009-z001" in names and "label-0000009-z004" in names   # 2**20 has 7 digits
    assert not any("-z003" in n for n in names)          # the empty plane has no ROIs
    assert all(r.getPosition() == int(str(r.getName())[-3:]) for r in rois)
    # ImageJ measures each ROI on its own slice of a plain stack
    imp = float_imp(J, img)
    assert imp.getStackSize() == 4 and not imp.isHyperStack()
    for r in rois:
        z = r.getPosition()
        lab = int(str(r.getProperty("label")))
        imp.setSlice(z)
        imp.setRoi(r)
        s = imp.getStatistics()
        sel = L3[z - 1] == lab
        assert s.pixelCount == sel.sum()
        assert s.mean == pytest.approx(img[z - 1][sel].astype(np.float64).mean(), rel=1e-9)
    np.testing.assert_array_equal(R.rois_to_labels(rois, L3.shape), L3)


def test_labels_to_rois_hyperstack_positions(J, R):
    L3 = stack_labels()
    rois = R.labels_to_rois(L3, position="hyperstack")
    assert all(r.hasHyperStackPosition() and r.getCPosition() == 0 and r.getTPosition() == 0
               for r in rois)
    assert {r.getZPosition() for r in rois} == {1, 2, 4}
    np.testing.assert_array_equal(R.rois_to_labels(rois, L3.shape), L3)
    # measured on a 2-channel hyperstack, each ROI on its z in both channels
    rng = np.random.default_rng(2)
    img = rng.normal(50, 10, (4, 2) + L3.shape[1:]).astype(np.float32)    # z, c, y, x
    imp = float_imp(J, img.reshape(-1, *L3.shape[1:]), nchannels=2, nslices=4)
    assert imp.isHyperStack()
    for r in rois[::5]:
        z, lab = r.getZPosition(), int(str(r.getProperty("label")))
        sel = L3[z - 1] == lab
        for c in (1, 2):
            imp.setPosition(c, z, 1)
            imp.setRoi(r)
            assert imp.getStatistics().mean == pytest.approx(
                img[z - 1, c - 1][sel].astype(np.float64).mean(), rel=1e-9)


def test_labels_time_and_4d(R):
    import xarray as xr

    L3 = stack_labels()
    rois_t = R.labels_to_rois(L3, dims=("t", "y", "x"))
    assert str(rois_t[0].getName()).endswith("-t001") and rois_t[0].getPosition() == 1
    np.testing.assert_array_equal(R.rois_to_labels(rois_t, L3.shape, dims=("t", "y", "x")), L3)
    da = xr.DataArray(L3, dims=("t", "row", "col"))               # PyImageJ names accepted
    assert [str(r.getName()) for r in R.labels_to_rois(da)] == [str(r.getName()) for r in rois_t]
    # the one alias table of ij_bridge.layout, any case, for arrays and shapes alike
    assert [str(r.getName()) for r in R.labels_to_rois(L3, dims=("Frames", "ROW", "Col"))] \
        == [str(r.getName()) for r in rois_t]
    np.testing.assert_array_equal(R.rois_to_labels(rois_t, L3.shape, dims=("time", "y", "x")), L3)
    with pytest.raises(ValueError, match="no channel axis"):
        R.labels_to_rois(L3, dims=("ch", "y", "x"))

    L4 = np.stack([L3, L3[::-1]])                                  # t, z, y, x
    rois = R.labels_to_rois(L4)
    last = rois[-1]
    assert str(last.getName()) == "label-1048576-t002-z004"
    assert (last.getZPosition(), last.getTPosition()) == (4, 2) and last.hasHyperStackPosition()
    np.testing.assert_array_equal(R.rois_to_labels(rois, L4.shape), L4)
    plain = R.labels_to_rois(L4, position="stack")                 # n = (t-1)*nz + z
    assert plain[-1].getPosition() == 8
    np.testing.assert_array_equal(R.rois_to_labels(plain, L4.shape), L4)


def test_labels_to_rois_progress(R):
    calls = []
    R.labels_to_rois(stack_labels(), progress=lambda d, t, m: calls.append((d, t, m)))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "objects" in calls[0][2]


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((3, 4), np.float32), TypeError, "integer dtype"),
    (np.zeros((5,), np.uint8), ValueError, "2D, 3D or 4D"),
    (np.zeros((0, 4), np.uint8), ValueError, "empty"),
    (-np.ones((3, 4), np.int16), ValueError, "negative"),
])
def test_labels_to_rois_bad_input(R, ij, bad, error, match):
    with pytest.raises(error, match=match):
        R.labels_to_rois(bad)


def test_labels_to_rois_bad_options(R, ij):
    L = np.ones((4, 4), np.uint8)
    with pytest.raises(ValueError, match="dims"):
        R.labels_to_rois(L[None], dims=("c", "y", "x"))
    with pytest.raises(ValueError, match="order"):
        R.labels_to_rois(np.ones((2, 2, 4, 4), np.uint8), dims=("z", "t", "y", "x"))
    with pytest.raises(ValueError, match="needs a stack"):
        R.labels_to_rois(L, position="hyperstack")
    with pytest.raises(ValueError, match="position"):
        R.labels_to_rois(L[None], position=3)


# --------------------------------------------------------------------------- ROIs -> labels
def test_rois_to_labels_membership_is_imagejs(J, R):
    """Oval, sub-pixel polygon and composite: same pixels as ImageJ's statistics count."""
    shape = (40, 50)
    rois = [make_roi(J, k)[0] for k in ("oval", "polygon-subpixel", "composite", "rounded")]
    ones = np.ones(shape, np.float32)
    imp = float_imp(J, ones)
    for k, r in enumerate(rois):
        L = R.rois_to_labels([r], shape)
        imp.setRoi(r)
        inside = imp.getStatistics().pixelCount
        assert L.sum() == inside > 0             # the rounded rectangle is clipped by the image
    # later ROIs win where they overlap; ROIs are clipped to the image
    a, b = J.Roi(0, 0, 10, 10), J.Roi(5, 5, 100, 100)
    L = R.rois_to_labels([a, b], (20, 20), labels="index")
    assert (L[:5, :10] == 1).all() and (L[5:, 5:] == 2).all() and L[5:10, :5].max() == 1
    neg = R.rois_to_labels([J.Roi(-3, -2, 5, 5)], (6, 6), labels=[7])
    assert (neg[:3, :2] == 7).all() and neg.sum() == 7 * 6


def test_rois_to_labels_values_and_positions(J, R):
    L = constructed_labels()
    rois = R.labels_to_rois(L)
    # "index" ignores the label property
    idx = R.rois_to_labels(rois, L.shape, labels="index")
    assert idx.max() == len(rois)
    assert sorted(np.unique(idx).tolist()) == list(range(len(rois) + 1))
    # foreign ROIs without the property are numbered in order
    plain = [J.Roi(0, 0, 2, 2), J.OvalRoi(4, 4, 5, 5)]
    assert set(np.unique(R.rois_to_labels(plain, (10, 10))).tolist()) == {0, 1, 2}
    # unpositioned ROIs fill every plane of a stack; positioned ones their own plane
    stacked = R.rois_to_labels([plain[0]], (3, 10, 10))
    assert all(stacked[z, 0, 0] == 1 for z in range(3))
    r = J.OvalRoi(4, 4, 5, 5)
    r.setPosition(0, 2, 0)
    stacked = R.rois_to_labels([r], (3, 10, 10))
    assert stacked[1].sum() > 0 and stacked[0].sum() == stacked[2].sum() == 0
    r.setPosition(0, 5, 0)
    with pytest.raises(ValueError, match="outside"):
        R.rois_to_labels([r], (3, 10, 10))


def test_rois_to_labels_bad_input(J, R):
    with pytest.raises(ValueError, match="area ROIs"):
        R.rois_to_labels([J.Line(1.0, 1.0, 5.0, 5.0)], (10, 10))
    with pytest.raises(ValueError, match="shape"):
        R.rois_to_labels([], (10,))
    with pytest.raises(ValueError, match="2 values for 1 ROIs"):
        R.rois_to_labels([J.Roi(0, 0, 2, 2)], (5, 5), labels=[1, 2])
    with pytest.raises(ValueError, match="cannot hold"):
        R.rois_to_labels([J.Roi(0, 0, 2, 2)], (5, 5), labels=[300], dtype=np.uint8)
    assert R.rois_to_labels([], (4, 5)).shape == (4, 5)


# --------------------------------------------------------------------------- Overlay
def test_overlay_round_trip(J, R):
    imp = float_imp(J, np.zeros((40, 50), np.float32))
    assert R.get_overlay_rois(imp) == []
    rois = [make_roi(J, k)[0] for k in ("oval", "polygon", "composite", "multipoint")]
    for k, r in enumerate(rois):
        r.setName(f"o{k}")
    R.set_overlay_rois(imp, rois)
    got = R.get_overlay_rois(imp)
    assert [g.name for g in got] == ["o0", "o1", "o2", "o3"]
    assert [g.tobytes() for g in got] == [R.roi_from_java(r).tobytes() for r in rois]
    R.set_overlay_rois(imp, [roifile.ImagejRoi.frompoints([[1, 1], [5, 1], [3, 4]], name="py")],
                       reset=False)
    assert [g.name for g in R.get_overlay_rois(imp)] == ["o0", "o1", "o2", "o3", "py"]
    assert imp.getOverlay().size() == 5
    R.set_overlay_rois(imp, rois[:1])
    assert len(R.get_overlay_rois(imp, java=True)) == 1
    with pytest.raises(TypeError, match="ImagePlus"):
        R.get_overlay_rois(rois[0])


# --------------------------------------------------------------------------- ROI Manager
def test_roi_manager_round_trip(J, R, clean_imagej):
    L4 = np.stack([stack_labels()] * 2)
    rois = R.labels_to_rois(L4)
    rm = R.set_roi_manager_rois(rois)
    assert rm.getCount() == len(rois)
    got = R.get_roi_manager_rois()
    assert [g.name for g in got] == [str(r.getName()) for r in rois]
    assert [(g.z_position, g.t_position) for g in got] == \
        [(r.getZPosition(), r.getTPosition()) for r in rois]
    assert all(g.props.strip() == f"label: {r.getProperty('label')}" for g, r in zip(got, rois))
    np.testing.assert_array_equal(R.rois_to_labels(got, L4.shape), L4)
    # appending; Java objects out
    R.set_roi_manager_rois([make_roi(J, "line")[0]], reset=False)
    java = R.get_roi_manager_rois(java=True)
    assert len(java) == len(rois) + 1 and java[-1].getType() == 5
    R.set_roi_manager_rois([])
    assert R.get_roi_manager_rois() == []


@pytest.mark.parametrize("position", ["stack", "hyperstack"])
def test_roi_manager_measure_uses_positions(J, R, position, clean_imagej):
    """ImageJ's own ROI Manager "Measure" finds each ROI's plane from our positions."""
    import jpype

    import ij_bridge

    Analyzer = jpype.JClass("ij.plugin.filter.Analyzer")
    ResultsTable = jpype.JClass("ij.measure.ResultsTable")
    Measurements = jpype.JClass("ij.measure.Measurements")
    L3 = stack_labels()
    img = np.random.default_rng(3).normal(100, 10, L3.shape).astype(np.float32)
    if position == "stack":
        imp = ij_bridge.to_imageplus(img, dims=("z", "y", "x"))
    else:   # 2 channels: the ROIs (channel 0 = all) measure the current channel, c = 1
        imp = ij_bridge.to_imageplus(np.stack([img, 2 * img], axis=1), dims=("z", "c", "y", "x"))
        assert imp.isHyperStack()
    rois = R.labels_to_rois(L3, position=position)
    rm = R.set_roi_manager_rois(rois)
    saved = Analyzer.getMeasurements()
    try:
        Analyzer.setMeasurements(Measurements.AREA | Measurements.MEAN)
        ResultsTable.getResultsTable().reset()
        imp.show()
        assert rm.runCommand(imp, "Measure")
        rt = ResultsTable.getResultsTable()
        area = np.asarray(rt.getColumn(rt.getColumnIndex("Area")))
        mean = np.asarray(rt.getColumn(rt.getColumnIndex("Mean")))
    finally:
        Analyzer.setMeasurements(saved)
    assert len(area) == len(rois)
    for k, r in enumerate(rois):
        z = (r.getZPosition() if position == "hyperstack" else r.getPosition()) - 1
        sel = L3[z] == int(str(r.getProperty("label")))
        assert area[k] == sel.sum()
        assert mean[k] == pytest.approx(img[z][sel].astype(np.float64).mean(), rel=1e-6)


def test_roi_manager_opens_files_written_by_roifile(J, R, tmp_path, clean_imagej, nuclei):
    mask, _ = nuclei
    irs = [R.roi_from_java(r) for r in R.labels_to_rois(mask)]
    extra = [R.roi_from_java(make_roi(J, k)[0]) for k in KINDS]
    for k, e in enumerate(extra):
        e.name = f"kind-{KINDS[k]}"
    irs += extra
    path = tmp_path / "rois.zip"
    write_roi_zip(path, irs[:3])
    write_roi_zip(path, irs)                   # replaces, never appends
    assert len(roifile.roiread(path)) == len(irs)
    rm = R.set_roi_manager_rois([])
    assert rm.runCommand("Open", str(path))
    java = R.get_roi_manager_rois(java=True)
    assert [str(r.getName()) for r in java] == [ir.name for ir in irs]
    # what the ROI Manager opened is what ImageJ's decoder makes of roifile's bytes
    assert [bytes(J.RoiEncoder.saveAsByteArray(r)) for r in java] == \
        [bytes(J.RoiEncoder.saveAsByteArray(imagej_decode(J, ir))) for ir in irs]
    np.testing.assert_array_equal(R.rois_to_labels(java[:73], mask.shape), mask)
    # a single .roi file too
    single = tmp_path / "one.roi"
    extra[-1].tofile(single)
    rm.reset()
    assert rm.runCommand("Open", str(single))
    assert rm.getCount() == 1 and rm.getRoi(0).getType() == 9


def test_roifile_reads_zips_saved_by_roi_manager(J, R, tmp_path, clean_imagej):
    L3 = stack_labels()
    rois = R.labels_to_rois(L3, position="hyperstack")
    shapes = [make_roi(J, k)[0] for k in KINDS]
    for k, s in enumerate(shapes):
        s.setName(f"kind-{KINDS[k]}")
        s.setPosition(1, 2, 1)
    rm = R.set_roi_manager_rois(rois + shapes)
    path = tmp_path / "saved by imagej.zip"
    assert rm.runCommand("Save", str(path))
    got = roifile.roiread(path)
    assert len(got) == len(rois) + len(shapes)
    assert [g.name for g in got] == [str(r.getName()) for r in rois + shapes]
    # ImageJ wrote its encoder's bytes, and roifile decodes the same values
    with zipfile.ZipFile(path) as zf:
        members = [zf.read(n) for n in zf.namelist()]
    assert members == [bytes(J.RoiEncoder.saveAsByteArray(r)) for r in rois + shapes]
    assert [g.tobytes() for g in got] == members
    assert all((g.c_position, g.z_position, g.t_position) == (1, 2, 1) for g in got[len(rois):])
    np.testing.assert_array_equal(R.rois_to_labels(got[:len(rois)], L3.shape), L3)


def test_headless_roi_manager_error_and_conversions():
    code = """
import json, numpy as np, ij_bridge
from ij_bridge.imagej import rois, HeadlessError
ij_bridge.start(mode="headless")
out = {}
for name, call in [("get", lambda: rois.get_roi_manager_rois()),
                   ("set", lambda: rois.set_roi_manager_rois([]))]:
    try:
        call()
        out[name] = "no error"
    except HeadlessError as e:
        out[name] = str(e)
L = np.zeros((20, 20), np.uint16); L[2:6, 3:9] = 4; L[10:12, 10:19] = 8; L[15, 15] = 8
rs = rois.labels_to_rois(L)
back = rois.rois_to_labels([rois.roi_from_java(r) for r in rs], L.shape)
out["labels_ok"] = bool((back == L).all())
print("RESULT" + json.dumps(out))
"""
    proc = run_python(code, env={"DISPLAY": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    for key in ("get", "set"):
        assert "The ROI Manager needs a display" in out[key]
        assert "mode='virtual'" in out[key]
    assert out["labels_ok"] is True
