"""ImagePlus <-> numpy/xarray conversions against a real ImageJ 1.x."""

from __future__ import annotations

import itertools
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr

from conftest import run_python

pytestmark = pytest.mark.imagej

DIM_SETS = [
    ("y", "x"), ("z", "y", "x"), ("c", "y", "x"), ("t", "y", "x"),
    ("c", "z", "y", "x"), ("t", "z", "y", "x"), ("t", "c", "y", "x"), ("t", "c", "z", "y", "x"),
]
SIZES = {"t": 3, "c": 2, "z": 4, "y": 7, "x": 11}  # non-square, all different: catches transposes
KINDS = ["uint8", "uint16", "int16", "float32", "rgb"]


def _random(kind: str, dims: tuple[str, ...], seed: int = 0) -> tuple[np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    shape = tuple(SIZES[d] for d in dims)
    if kind == "rgb":
        return rng.integers(0, 256, shape + (3,), dtype=np.uint8), dims + ("s",)
    if kind == "float32":
        return (rng.standard_normal(shape) * 1000).astype(np.float32), dims
    info = np.iinfo(kind)
    return rng.integers(info.min, info.max, shape, dtype=kind, endpoint=True), dims


def _raw_pixel(imp, c, z, t, y, x):
    ip = imp.getStack().getProcessor(imp.getStackIndex(c + 1, z + 1, t + 1))
    return ip.getPixel(x, y) if imp.getBitDepth() != 32 else ip.getPixelValue(x, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", DIM_SETS, ids=lambda d: "".join(d))
def test_round_trip_every_type_and_dims(ij, kind, dims):
    from ij_bridge import from_imageplus, to_imageplus

    arr, full_dims = _random(kind, dims)
    imp = to_imageplus(arr, dims=full_dims, title="rt")
    # ImageJ's own view of the layout
    assert (imp.getWidth(), imp.getHeight()) == (SIZES["x"], SIZES["y"])
    assert imp.getNChannels() == (SIZES["c"] if "c" in dims else 1)
    assert imp.getNSlices() == (SIZES["z"] if "z" in dims else 1)
    assert imp.getNFrames() == (SIZES["t"] if "t" in dims else 1)
    assert imp.getBitDepth() == {"uint8": 8, "uint16": 16, "int16": 16, "float32": 32, "rgb": 24}[kind]
    assert bool(imp.isHyperStack()) == (sum(d in dims for d in "czt") > 1)
    # every plane, looked up through ImageJ's stack index, holds the right pixels
    full = xr.DataArray(arr, dims=full_dims).expand_dims([d for d in "tczyx" if d not in dims])
    full = full.transpose("t", "c", "z", "y", "x", *(["s"] if kind == "rgb" else []))
    rng = np.random.default_rng(1)
    for t, c, z in itertools.product(*(range(full.sizes[d]) for d in "tcz")):
        y, x = int(rng.integers(SIZES["y"])), int(rng.integers(SIZES["x"]))
        expected = full.values[t, c, z, y, x]
        got = _raw_pixel(imp, c, z, t, y, x)
        if kind == "rgb":
            assert got & 0xFFFFFF == (int(expected[0]) << 16) | (int(expected[1]) << 8) | int(expected[2])
        elif kind == "int16":
            assert got - 32768 == expected
        else:
            assert got == expected
    back = from_imageplus(imp)
    assert back.dims == full_dims
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.values, arr)
    assert back.attrs["title"] == "rt"


@pytest.mark.parametrize("kind", ["uint8", "uint16", "int16", "float32"])
def test_imagej_statistics_agree_with_numpy(ij, kind):
    """ImageJ's calibrated statistics of every plane equal numpy's (signed 16-bit included)."""
    from ij_bridge import to_imageplus

    arr, dims = _random(kind, ("c", "z", "y", "x"), seed=3)
    imp = to_imageplus(arr, dims=dims)
    for c, z in itertools.product(range(SIZES["c"]), range(SIZES["z"])):
        imp.setPosition(c + 1, z + 1, 1)
        stats = imp.getStatistics()
        plane = arr[c, z].astype(np.float64)
        assert stats.pixelCount == plane.size
        assert stats.mean == pytest.approx(plane.mean(), rel=1e-9, abs=1e-9)
        assert stats.min == plane.min() and stats.max == plane.max()


def test_other_dtypes_documented_behaviour(ij):
    from ij_bridge import from_imageplus, to_imageplus
    from ij_bridge.imagej.images import LossyConversionWarning

    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lossless cases must not warn
        i8 = rng.integers(-128, 128, (5, 6), dtype=np.int8)
        back = from_imageplus(to_imageplus(i8))
        assert back.dtype == np.int16 and np.array_equal(back.values, i8)

        mask = rng.random((5, 6)) > 0.5
        imp = to_imageplus(mask)
        assert imp.getBitDepth() == 8
        back = from_imageplus(imp)
        assert back.dtype == np.uint8 and set(np.unique(back.values)) <= {0, 255}
        assert np.array_equal(back.values == 255, mask)

        f16 = rng.standard_normal((5, 6)).astype(np.float16)
        back = from_imageplus(to_imageplus(f16))
        assert back.dtype == np.float32 and np.array_equal(back.values, f16.astype(np.float32))

        f64 = rng.standard_normal((5, 6))
        back = from_imageplus(to_imageplus(f64))
        assert np.array_equal(back.values, f64.astype(np.float32))

        for dt in (np.int32, np.uint32, np.int64, np.uint64):
            labels = rng.integers(0, 2**24, (5, 6)).astype(dt)
            back = from_imageplus(to_imageplus(labels))
            assert back.dtype == np.float32 and np.array_equal(back.values.astype(dt), labels)

    big = np.array([[0, 2**24 + 1], [3, 2**40 + 7]], dtype=np.int64)
    with pytest.warns(LossyConversionWarning, match="2 value"):
        to_imageplus(big)
    with pytest.warns(LossyConversionWarning, match="overflow"):
        to_imageplus(np.array([[1e300, 1.0]]))
    with pytest.raises(TypeError, match="complex"):
        to_imageplus(np.zeros((3, 3), np.complex64))
    with pytest.raises(TypeError, match="uint8"):
        to_imageplus(np.zeros((3, 3, 3), np.float32), dims=("y", "x", "s"))


def test_calibration_exact_both_ways(ij):
    from ij_bridge import from_imageplus, to_imageplus

    ny, nx, nz, nt = 6, 9, 4, 3
    da = xr.DataArray(
        np.zeros((nt, nz, ny, nx), np.uint16), dims=("t", "z", "y", "x"),
        coords={"x": 12.5 + 0.1625 * np.arange(nx), "y": -3.0 + 0.325 * np.arange(ny),
                "z": 0.7 * np.arange(nz) + 1.4, "t": 5.0 + 30.0 * np.arange(nt)},
        attrs={"units": {"x": "µm", "y": "nm", "z": "mm", "t": "s"}})
    imp = to_imageplus(da)
    cal = imp.getCalibration()
    assert cal.pixelWidth == pytest.approx(0.1625, rel=1e-15)
    assert cal.pixelHeight == pytest.approx(0.325, rel=1e-15)
    assert cal.pixelDepth == pytest.approx(0.7, rel=1e-15)
    assert cal.frameInterval == 30.0
    # ImageJ keeps the origin in pixels: physical x = (i - xOrigin) * pixelWidth
    assert cal.xOrigin == pytest.approx(-12.5 / 0.1625, rel=1e-15)
    assert cal.yOrigin == pytest.approx(3.0 / 0.325, rel=1e-15)
    assert cal.zOrigin == pytest.approx(-2.0, rel=1e-15)
    for i in range(nx):
        assert cal.getX(i) == pytest.approx(da.x.values[i], rel=1e-14, abs=1e-12)
    for i in range(ny):
        assert cal.getY(i) == pytest.approx(da.y.values[i], rel=1e-14, abs=1e-12)
    assert (str(cal.getXUnit()), str(cal.getYUnit()), str(cal.getZUnit()), str(cal.getTimeUnit())) == \
        ("µm", "nm", "mm", "s")

    back = from_imageplus(imp)
    assert back.attrs["units"] == {"x": "µm", "y": "nm", "z": "mm", "t": "s"}
    # coordinates are exactly ImageJ's own Calibration.getX/getY/getZ
    assert np.array_equal(back.x.values, [cal.getX(i) for i in range(nx)])
    assert np.array_equal(back.y.values, [cal.getY(i) for i in range(ny)])
    assert np.array_equal(back.z.values, [cal.getZ(i) for i in range(nz)])
    np.testing.assert_allclose(back.t.values, da.t.values, rtol=0, atol=1e-12)
    # and back into ImageJ: every number identical
    cal2 = to_imageplus(back).getCalibration()
    for f in ("pixelWidth", "pixelHeight", "pixelDepth", "xOrigin", "yOrigin", "zOrigin", "frameInterval"):
        assert getattr(cal2, f) == getattr(cal, f), f
    assert str(cal2) == str(cal)


def test_imagej_calibration_survives_python(ij):
    """A calibration made in ImageJ (including z of a single plane) round-trips exactly."""
    from ij_bridge import from_imageplus, to_imageplus

    imp = ij.createImage("cal", "32-bit ramp", 13, 8, 1)
    cal = imp.getCalibration()
    cal.pixelWidth, cal.pixelHeight, cal.pixelDepth = 0.123456789, 0.2, 1.75
    cal.xOrigin, cal.yOrigin, cal.zOrigin = 3.3, -1.25, 2.0
    cal.setUnit("um")
    cal.setZUnit("nm")
    cal.setValueUnit("photons")
    imp.setProperty("Info", "acquired on scope 3")
    back = from_imageplus(imp)
    assert back.dims == ("y", "x")
    assert back.attrs["units"] == {"x": "µm", "y": "µm"}   # ImageJ spells "um" as "µm"
    assert back.attrs["value_unit"] == "photons"
    assert back.attrs["info"] == "acquired on scope 3"
    assert back.x.values[0] == (0 - 3.3) * 0.123456789
    np.testing.assert_array_equal(back.values, np.asarray(imp.getProcessor().getFloatArray()).T)
    imp2 = to_imageplus(back)
    cal2 = imp2.getCalibration()
    assert str(cal2) == str(cal)
    for f in ("pixelWidth", "pixelHeight", "pixelDepth", "xOrigin", "yOrigin", "zOrigin"):
        assert getattr(cal2, f) == getattr(cal, f), f
    assert str(cal2.getZUnit()) == "nm" and str(cal2.getValueUnit()) == "photons"
    assert str(imp2.getProperty("Info")) == "acquired on scope 3"
    assert str(imp2.getTitle()) == "cal"


def test_value_functions(ij):
    from ij_bridge import from_imageplus, to_imageplus
    import jpype

    # signed 16-bit made by ImageJ comes out as int16 with the true values
    imp = ij.createImage("s16", "16-bit black", 4, 3, 1)
    imp.getProcessor().set(0, 0, 0)          # raw 0 -> -32768
    imp.getProcessor().set(1, 0, 32768 + 5)  # raw 32773 -> 5
    imp.getCalibration().setSigned16BitCalibration()
    back = from_imageplus(imp)
    assert back.dtype == np.int16
    assert back.values[0, 0] == -32768 and back.values[0, 1] == 5
    assert bool(to_imageplus(back).getCalibration().isSigned16Bit())
    # any other value function stays a function on the raw pixels
    Calibration = jpype.JClass("ij.measure.Calibration")
    imp = ij.createImage("od", "8-bit ramp", 16, 4, 1)
    imp.getCalibration().setFunction(Calibration.STRAIGHT_LINE, jpype.JArray(jpype.JDouble)([10.0, 0.5]), "mg")
    back = from_imageplus(imp)
    assert back.dtype == np.uint8
    assert back.attrs["value_calibration"] == {"function": Calibration.STRAIGHT_LINE,
                                               "coefficients": [10.0, 0.5], "unit": "mg"}
    cal2 = to_imageplus(back).getCalibration()
    assert cal2.getCValue(100) == 10.0 + 0.5 * 100 and str(cal2.getValueUnit()) == "mg"


def test_time_origin_labels_title_and_display_range(ij):
    from ij_bridge import from_imageplus, to_imageplus

    da = xr.DataArray(np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5), dims=("time", "row", "col"),
                      coords={"time": [10.0, 12.5, 15.0]}, attrs={"units": {"time": "min"}},
                      name="movie")
    imp = to_imageplus(da)
    assert str(imp.getTitle()) == "movie"
    assert imp.getNFrames() == 3 and imp.getCalibration().frameInterval == 2.5
    assert str(imp.getCalibration().getTimeUnit()) == "min"
    back = from_imageplus(imp)
    assert back.dims == ("t", "y", "x")
    np.testing.assert_array_equal(back.t.values, [10.0, 12.5, 15.0])
    assert back.attrs["units"]["t"] == "min"
    # uncalibrated time: frame numbers, unit "frame", and back to frameInterval 0
    plain = from_imageplus(to_imageplus(da.values, dims=("t", "y", "x")))
    assert plain.attrs["units"]["t"] == "frame" and list(plain.t.values) == [0, 1, 2]
    assert to_imageplus(plain).getCalibration().frameInterval == 0.0
    # slice labels and display range
    imp.getStack().setSliceLabel("first", 1)
    imp.setDisplayRange(3, 40)
    back = from_imageplus(imp)
    assert back.attrs["slice_labels"][0] == "first"
    assert back.attrs["display_range"] == (3.0, 40.0)
    imp2 = to_imageplus(back)
    assert str(imp2.getStack().getSliceLabel(1)) == "first"
    assert (imp2.getDisplayRangeMin(), imp2.getDisplayRangeMax()) == (3.0, 40.0)


def test_pyimagej_dim_names_and_any_order(ij):
    from ij_bridge import from_imageplus, to_imageplus

    arr = np.random.default_rng(2).integers(0, 255, (5, 3, 2, 4), dtype=np.uint8)  # x, y, ch, pln
    imp = to_imageplus(arr, dims=("col", "row", "Ch", "pln"))
    assert (imp.getWidth(), imp.getHeight(), imp.getNChannels(), imp.getNSlices()) == (5, 3, 2, 4)
    back = from_imageplus(imp)
    assert back.dims == ("c", "z", "y", "x")
    np.testing.assert_array_equal(back.values, arr.transpose(2, 3, 1, 0))


def test_rgb_from_imagej(ij, shared_data):
    from ij_bridge import from_imageplus, to_imageplus

    imp = ij.openImage(str(shared_data / "he_rgb.jpg"))
    back = from_imageplus(imp)
    assert back.dims == ("y", "x", "s") and back.dtype == np.uint8
    assert list(back.s.values) == ["R", "G", "B"]
    ip = imp.getProcessor()
    for x, y in [(0, 0), (17, 40), (imp.getWidth() - 1, imp.getHeight() - 1)]:
        r, g, b = (int(v) for v in back.values[y, x])
        assert ip.getPixel(x, y) & 0xFFFFFF == (r << 16) | (g << 8) | b
    imp2 = to_imageplus(back)
    assert imp2.getType() == imp.getType()
    mask = np.int32(0xFFFFFF)
    assert np.array_equal(np.asarray(memoryview(imp2.getProcessor().getPixels())) & mask,
                          np.asarray(memoryview(ip.getPixels())) & mask)


@pytest.mark.parametrize("data, dims, match", [
    (np.zeros((4, 5, 6), np.uint8), None, "needs dims="),
    (np.zeros((5, 6, 3), np.uint8), None, "needs dims="),
    (np.zeros((4, 5, 6), np.uint8), ("y", "x"), "name 2 axes"),
    (np.zeros((4, 5, 6), np.uint8), ("q", "y", "x"), "unknown dim"),
    (np.zeros((4, 5, 6), np.uint8), ("z", "pln", "x"), "same axis twice"),
    (np.zeros((4, 5), np.uint8), ("z", "x"), "need both a y"),
    (np.zeros((0, 5), np.uint8), None, "empty"),
    (np.zeros(5, np.uint8), ("x",), "at least 2 dims"),
    (np.zeros((4, 5, 4), np.uint8), ("y", "x", "s"), "size 3"),
])
def test_bad_input_is_rejected_before_imagej_is_touched(ij, data, dims, match):
    import jpype

    from ij_bridge import to_imageplus

    WindowManager = jpype.JClass("ij.WindowManager")
    before = WindowManager.getImageCount()
    with pytest.raises(ValueError, match=match):
        to_imageplus(data, dims=dims)
    assert WindowManager.getImageCount() == before


def test_bad_coordinates(ij):
    from ij_bridge import to_imageplus

    base = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match="not evenly spaced"):
        to_imageplus(xr.DataArray(base, dims=("y", "x"), coords={"x": [0, 1, 2, 4, 5]}))
    with pytest.raises(ValueError, match="must increase"):
        to_imageplus(xr.DataArray(base, dims=("y", "x"), coords={"x": [5, 4, 3, 2, 1.0]}))
    with pytest.raises(ValueError, match="not numeric"):
        to_imageplus(xr.DataArray(base, dims=("y", "x"), coords={"y": list("abcd")}))
    with pytest.raises(ValueError, match="dims= is for numpy"):
        to_imageplus(xr.DataArray(base, dims=("y", "x")), dims=("y", "x"))
    with pytest.raises(ValueError, match="no image"):
        from ij_bridge import from_imageplus

        from_imageplus(None)


def test_headless_mode_converts(tmp_path):
    """Conversions (hyperstack, composite, RGB, calibration) need no display."""
    code = textwrap.dedent("""
        import numpy as np, xarray as xr, ij_bridge
        info = ij_bridge.start(mode="headless")
        assert info["mode"] == "headless", info
        import jpype
        assert jpype.JClass("java.awt.GraphicsEnvironment").isHeadless()
        arr = np.arange(2 * 3 * 4 * 5 * 6, dtype=np.int16).reshape(2, 3, 4, 5, 6) - 300
        da = xr.DataArray(arr, dims=("t", "c", "z", "y", "x"), coords={"x": np.arange(6) * 0.5},
                          attrs={"units": {"x": "um"}})
        imp = ij_bridge.to_imageplus(da)
        back = ij_bridge.from_imageplus(imp)
        assert back.dims == da.dims and np.array_equal(back.values, arr)
        assert back.attrs["units"]["x"] == "µm" and list(back.x.values) == list(da.x.values)
        rgb = np.full((3, 4, 3), 7, np.uint8)
        assert np.array_equal(ij_bridge.from_imageplus(ij_bridge.to_imageplus(rgb, dims="yxs")).values, rgb)
        print("OK", imp.getClass().getName())
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK ij.CompositeImage" in proc.stdout


def test_numpy_is_uncalibrated_and_virtual_stacks_read(ij, tmp_path):
    import jpype

    from ij_bridge import from_imageplus, io, to_imageplus

    arr = np.arange(3 * 5 * 6, dtype=np.float32).reshape(3, 5, 6)
    imp = to_imageplus(arr, dims="zyx")
    cal = imp.getCalibration()
    assert not cal.scaled() and str(cal.getUnit()) == "pixel"
    assert (cal.xOrigin, cal.yOrigin, cal.zOrigin, cal.frameInterval) == (0.0, 0.0, 0.0, 0.0)
    back = from_imageplus(imp)
    assert back.attrs["units"] == {"x": "pixel", "y": "pixel", "z": "pixel"}
    assert list(back.z.values) == [0.0, 1.0, 2.0]
    # a virtual stack (planes read from disk on demand) converts the same way
    path = io.imwrite(tmp_path / "v.tif", arr, dims="zyx")
    virtual = jpype.JClass("ij.plugin.FileInfoVirtualStack").openVirtual(str(path))
    assert virtual.getStack().isVirtual()
    np.testing.assert_array_equal(from_imageplus(virtual).values, arr)
