"""Label outlines as ROIs (ij_bridge.outlines) and the label LUT (ij_bridge.luts), without Java.

The outlines are filled back here by pixel centres with the even-odd rule, as
ImageJ fills polygons and composite shapes; tests/test_stardist3d_imagej.py
checks the same ROIs against ImageJ's own masks and ThresholdToSelection.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import roifile

from ij_bridge.luts import label_lut, srgb_to_lab
from ij_bridge.outlines import label_outlines, outline_rois


def fill(loops, shape) -> np.ndarray:
    """Pixels whose centre lies inside the closed loops (even-odd rule)."""
    yc, xc = np.mgrid[:shape[0], :shape[1]] + 0.5
    inside = np.zeros(shape, bool)
    for pts in loops:
        pts = np.asarray(pts, float)
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for a, b, c, d in zip(x0, y0, x1, y1):
            if b == d:
                continue
            crosses = ((b <= yc) != (d <= yc)) & (xc < a + (yc - b) * (c - a) / (d - b))
            inside ^= crosses
    return inside


def roi_loops(roi: roifile.ImagejRoi) -> list[np.ndarray]:
    if roi.composite:
        return [c[:-1] for c in roi.coordinates(multi=True)]  # paths come back closed
    return [roi.coordinates()]


def tricky_plane() -> np.ndarray:
    lab = np.zeros((14, 15), np.int32)
    lab[0:5, 0:5] = 3          # at the image corner, with a one-pixel hole
    lab[2, 2] = 0
    lab[5, 5] = 3              # touches the square only at a corner
    lab[6, 6] = 3
    lab[8:13, 8:14] = 5        # a ring around another object
    lab[10, 10:12] = 6
    lab[0, 14] = 9             # two pixels touching at a corner, at the border
    lab[1, 13] = 9
    lab[7:14, 0] = 70000       # a large label value on the left edge
    return lab


def test_outlines_fill_back_to_each_object():
    lab = tricky_plane()
    outlines = label_outlines(lab)
    assert list(outlines) == [3, 5, 6, 9, 70000]
    for value, loops in outlines.items():
        np.testing.assert_array_equal(fill(loops, lab.shape), lab == value, err_msg=str(value))
    # the square with its hole: outer loop clockwise on screen, the hole the other way round
    areas = [0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
             for p in outlines[3]]
    assert sorted(areas) == [-1.0, 1.0, 1.0, 25.0]
    # vertices only where the outline turns
    assert outlines[6][0].tolist() == [[10, 10], [12, 10], [12, 11], [10, 11]]


@pytest.mark.parametrize("seed", range(6))
def test_outlines_of_random_labels(seed):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 5, (20, 23)) * (rng.random((20, 23)) < 0.6)
    for value, loops in label_outlines(lab).items():
        np.testing.assert_array_equal(fill(loops, lab.shape), lab == value)


def test_outline_rois_of_a_stack_names_positions_and_types():
    stack = np.stack([tricky_plane(), np.zeros((14, 15), np.int32), tricky_plane()[::-1]])
    rois = outline_rois(stack)
    names = [r.name for r in rois]
    assert names[:5] == [f"label-{v:05d}-z001" for v in (3, 5, 6, 9, 70000)]
    assert {r.z_position for r in rois} == {1, 3} and {r.c_position for r in rois} == {0}
    assert {r.t_position for r in rois} == {0}
    for r in rois:
        z = r.z_position - 1
        value = int(r.props.split(":")[1])
        assert r.props == f"label: {value}\n"
        np.testing.assert_array_equal(fill(roi_loops(r), stack.shape[1:]), stack[z] == value)
        # a single loop is a traced polygon; holes or pieces make one composite ROI
        assert (r.roitype == roifile.ROI_TYPE.TRACED) == (len(label_outlines(stack[z])[value]) == 1)
    # the bytes survive a round trip through the .roi format
    again = [roifile.ImagejRoi.frombytes(r.tobytes()) for r in rois]
    assert [roi_loops(a)[0].tolist() for a in again] == [roi_loops(r)[0].tolist() for r in rois]
    # time series and both: t, then z
    tz = np.stack([stack[:2], stack[1:]])
    rois = outline_rois(tz, position="hyperstack")
    assert [(r.z_position, r.t_position) for r in rois][:1] == [(1, 1)]
    assert rois[-1].name == "label-70000-t002-z002" and (rois[-1].z_position, rois[-1].t_position) == (2, 2)
    plain = outline_rois(tz, position="stack")
    assert [r.position for r in plain][-1] == 4  # (t - 1) * nz + z
    t_only = outline_rois(stack, dims=("t", "y", "x"))
    assert (t_only[0].name, t_only[0].z_position, t_only[0].t_position) == ("label-00003-t001", 0, 1)
    assert outline_rois(np.zeros((3, 4, 4), np.uint16)) == []


def test_outline_rois_bad_input():
    with pytest.raises(ValueError, match="whole numbers"):
        outline_rois(np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="negative"):
        outline_rois(-np.ones((4, 4), np.int16))
    with pytest.raises(ValueError, match="order"):
        outline_rois(np.zeros((2, 2, 4, 4), np.uint8), dims=("z", "t", "y", "x"))
    with pytest.raises(ValueError, match="position"):
        outline_rois(np.zeros((2, 4, 4), np.uint8), position="plane")


def test_outlines_are_fast_enough_for_100_objects_in_30_slices():
    import time

    rng = np.random.default_rng(0)
    lab = np.zeros((30, 256, 256), np.uint16)
    zz, yy, xx = np.mgrid[-28:29, -14:15, -14:15]
    for k in range(100):  # ellipsoids, half as deep as wide, overlapping
        cz, cy, cx = rng.integers([2, 14, 14], [28, 242, 242])
        ball = (zz * 0.5) ** 2 + yy ** 2 + xx ** 2 < rng.uniform(8, 14) ** 2
        z0 = max(cz - 28, 0)
        view = lab[z0:cz + 29, cy - 14:cy + 15, cx - 14:cx + 15]
        view[ball[z0 - (cz - 28):z0 - (cz - 28) + view.shape[0]]] = k + 1
    t = time.perf_counter()
    rois = outline_rois(lab)
    elapsed = time.perf_counter() - t
    assert len(rois) == sum(len(np.unique(p)) - 1 for p in lab) > 2000
    assert elapsed < 10, elapsed  # about 0.5 s on one core


def test_label_lut_is_fixed_distinct_and_black_at_zero():
    lut = label_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    assert lut[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in lut.tolist()}) == 256
    lab = srgb_to_lab(lut)
    assert lab[1:, 0].min() >= 25  # no label looks like the black background
    d = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 10  # CIELAB distance: every pair tells apart
    assert min(d[i, i + 1] for i in range(255)) > 15  # and neighbouring labels more so
    # the same table on every run (greedy max-min from a seeded candidate order)
    assert lut[1:6].tolist() == [[0, 255, 0], [0, 0, 255], [255, 0, 0], [0, 255, 255], [255, 159, 247]]
    assert hashlib.sha256(lut.tobytes()).hexdigest()[:16] == "2e1b625a1c7b5be0"
