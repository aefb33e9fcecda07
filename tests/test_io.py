"""ImageJ-compatible files written/read without Java, checked against a real ImageJ."""

from __future__ import annotations

import os
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import run_python
from ij_bridge import io

KINDS = ["uint8", "uint16", "int16", "float32", "rgb"]
DIM_SETS = [("y", "x"), ("z", "y", "x"), ("c", "y", "x"), ("t", "y", "x"), ("t", "c", "z", "y", "x")]
SIZES = {"t": 2, "c": 3, "z": 4, "y": 7, "x": 11}


def _image(kind, dims, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(SIZES[d] for d in dims)
    if kind == "rgb":
        arr, dims = rng.integers(0, 256, shape + (3,), dtype=np.uint8), dims + ("s",)
    elif kind == "float32":
        arr = (rng.standard_normal(shape) * 100).astype(np.float32)
    else:
        info = np.iinfo(kind)
        arr = rng.integers(info.min, info.max, shape, dtype=kind, endpoint=True)
    coords = {"x": 2.0 + 0.1625 * np.arange(SIZES["x"]), "y": -1.5 + 0.2 * np.arange(SIZES["y"])}
    units = {"x": "µm", "y": "µm"}
    if "z" in dims:
        coords["z"] = 0.5 * np.arange(SIZES["z"]) + 1.0
        units["z"] = "µm"
    if "t" in dims:
        coords["t"] = 4.5 * np.arange(SIZES["t"])
        units["t"] = "min"
    return xr.DataArray(arr, dims=dims, coords=coords, attrs={"units": units})


def _assert_same_image(a: xr.DataArray, b: xr.DataArray):
    assert a.dims == b.dims
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a.values, b.values)
    for d in a.dims:
        if d in ("x", "y", "z", "t"):
            np.testing.assert_array_equal(a[d].values, b[d].values, err_msg=d)
    assert a.attrs["units"] == b.attrs["units"]
    assert a.attrs["calibration"] == b.attrs["calibration"]


@pytest.mark.imagej
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", DIM_SETS, ids=lambda d: "".join(d))
def test_our_file_opens_identically_in_imagej(ij, tmp_path, kind, dims):
    from ij_bridge import from_imageplus

    da = _image(kind, dims)
    path = io.imwrite(tmp_path / "a.tif", da)
    imp = ij.openImage(str(path))
    assert imp is not None
    cal = imp.getCalibration()
    # TIFF stores 1/size as a 32-bit rational: ImageJ's own writer keeps ~7 digits
    # (0.16250000406); ours is exact where such a rational exists, else within an ulp or two
    assert cal.pixelWidth == pytest.approx(0.1625, rel=5e-16)
    assert cal.pixelHeight == 0.2
    assert cal.xOrigin == -2.0 / 0.1625 and cal.yOrigin == 1.5 / 0.2
    assert str(cal.getUnit()) == "µm"
    if "t" in dims:
        assert cal.frameInterval == 4.5 and str(cal.getTimeUnit()) == "min"
    if "z" in dims:
        assert cal.pixelDepth == 0.5 and cal.zOrigin == -2.0
    ours = io.imread(path)
    theirs = from_imageplus(imp)
    _assert_same_image(ours, theirs)
    np.testing.assert_array_equal(theirs.values, da.values)
    assert theirs.dims == da.dims
    for d in ("x", "y", "z", "t"):
        if d in da.dims:
            np.testing.assert_allclose(theirs[d].values, da[d].values, rtol=0, atol=1e-12)


@pytest.mark.imagej
@pytest.mark.parametrize("kind", KINDS)
def test_imagej_saved_file_reads_identically(ij, tmp_path, kind):
    from ij_bridge import from_imageplus, to_imageplus

    da = _image(kind, ("t", "c", "z", "y", "x") if kind != "rgb" else ("z", "y", "x"), seed=4)
    imp = to_imageplus(da, title="saved")
    cal = imp.getCalibration()
    cal.setYUnit("nm")
    cal.setZUnit("mm")
    imp.setProperty("Info", "made in ImageJ")
    path = tmp_path / "ij.tif"
    assert ij.saveAsTiff(imp, str(path))
    ours = io.imread(path)
    theirs = from_imageplus(ij.openImage(str(path)))
    _assert_same_image(ours, theirs)
    np.testing.assert_array_equal(ours.values, da.values)
    assert ours.attrs["info"] == "made in ImageJ"
    assert ours.attrs["units"]["y"] == "nm"
    if "z" in ours.dims:
        assert ours.attrs["units"]["z"] == "mm"


@pytest.mark.imagej
def test_signed_value_function_from_imagej_file(ij, tmp_path):
    """ImageJ saves signed 16-bit as raw uint16 + value function; we read int16."""
    imp = ij.createImage("s", "16-bit ramp", 8, 3, 1)
    imp.getCalibration().setSigned16BitCalibration()
    path = tmp_path / "signed.tif"
    ij.saveAsTiff(imp, str(path))
    back = io.imread(path)
    assert back.dtype == np.int16
    raw = np.asarray(memoryview(imp.getProcessor().getPixels())).view(np.uint16).reshape(3, 8)
    np.testing.assert_array_equal(back.values, raw.astype(np.int32) - 32768)


@pytest.mark.imagej
def test_overlay_and_roi_in_tiff(ij, tmp_path):
    from roifile import ImagejRoi

    rect = ImagejRoi.frompoints(np.array([[1, 1], [6, 1], [6, 4], [1, 4]], np.float32))
    rect.name = "poly"
    sel = ImagejRoi.frompoints(np.array([[0, 0], [3, 0], [3, 3]], np.float32))
    path = io.imwrite(tmp_path / "o.tif", np.zeros((8, 10), np.uint8), overlay=[rect], roi=sel)
    imp = ij.openImage(str(path))
    ov = imp.getOverlay()
    assert ov is not None and ov.size() == 1 and str(ov.get(0).getName()) == "poly"
    assert imp.getRoi() is not None and imp.getRoi().getPolygon().npoints == 3
    back = io.imread(path)
    assert back.attrs["overlay"][0].name == "poly"
    np.testing.assert_array_equal(back.attrs["overlay"][0].coordinates(), rect.coordinates())
    assert len(back.attrs["roi"].coordinates()) == 3


def test_write_is_atomic_and_never_overwrites(tmp_path):
    path = tmp_path / "x.tif"
    io.imwrite(path, np.zeros((4, 5), np.uint8))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.imwrite(path, np.ones((4, 5), np.uint8))
    assert path.read_bytes() == before
    # bad input: error before anything is written, no stray temporary files
    for bad, kw in [(np.zeros((2, 4, 5)), {}), (np.zeros((0, 5)), {}),
                    (np.zeros((4, 5), np.complex64), {}), (np.zeros((4, 5)), {"dims": "yq"})]:
        with pytest.raises((ValueError, TypeError)):
            io.imwrite(path, bad, overwrite=True, **kw)
    assert path.read_bytes() == before
    with pytest.raises(ValueError):
        io.imwrite(tmp_path / "new.tif", np.zeros((2, 4, 5)))
    assert sorted(os.listdir(tmp_path)) == ["x.tif"]
    io.imwrite(path, np.ones((4, 5), np.uint8), overwrite=True)
    assert io.imread(path).values.sum() == 20
    assert sorted(os.listdir(tmp_path)) == ["x.tif"]
    with pytest.raises(FileNotFoundError):
        io.imwrite(tmp_path / "missing" / "y.tif", np.zeros((4, 5), np.uint8))


def test_plain_tiff_and_shared_data(shared_data):
    img = io.imread(shared_data / "nuclei2d" / "train_left_img.tif")
    assert img.dims == ("y", "x") and img.dtype == np.uint16 and img.shape == (512, 256)
    mask = io.imread(shared_data / "nuclei2d" / "train_left_mask.tif")
    assert len(np.unique(mask.values)) == 74  # 73 nuclei + background


@pytest.mark.imagej
def test_imread_matches_imagej_on_shared_data(ij, shared_data):
    from ij_bridge import from_imageplus

    path = shared_data / "nuclei2d" / "train_left_img.tif"
    ours, theirs = io.imread(path), from_imageplus(ij.openImage(str(path)))
    np.testing.assert_array_equal(ours.values, theirs.values)
    assert ours.dims == theirs.dims


@pytest.mark.imagej
def test_rois_zip_both_ways(ij, tmp_path):
    import jpype
    from roifile import ImagejRoi

    rois = []
    for i in range(3):
        r = ImagejRoi.frompoints(np.array([[i, 0], [i + 4, 0], [i + 4, 5]], np.float32))
        r.name = "cell"  # duplicate names are made unique, as ImageJ does
        rois.append(r)
    path = io.write_rois(tmp_path / "set.zip", rois)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["cell.roi", "cell-2.roi", "cell-3.roi"]
    with pytest.raises(FileExistsError):
        io.write_rois(path, rois[:1])
    io.write_rois(path, rois[:1], overwrite=True)  # replaces, never appends
    assert len(io.read_rois(path)) == 1
    io.write_rois(path, rois, overwrite=True)
    # ImageJ's own ROI Manager opens it
    RoiManager = jpype.JClass("ij.plugin.frame.RoiManager")
    rm = RoiManager(True)  # a hidden manager of our own
    try:
        assert rm.runCommand("Open", str(path))
        assert rm.getCount() == 3
        assert [str(rm.getName(i)) for i in range(3)] == ["cell", "cell-2", "cell-3"]
        assert rm.getRoi(1).getPolygon().xpoints[0] == 1
        saved = tmp_path / "ij.zip"
        assert rm.runCommand("Save", str(saved))
    finally:
        rm.close()
    back = io.read_rois(saved)
    assert [r.name for r in back] == ["cell", "cell-2", "cell-3"]
    np.testing.assert_array_equal(back[2].coordinates(), rois[2].coordinates())
    with pytest.raises(ValueError, match="no ROIs"):
        io.write_rois(tmp_path / "e.zip", [])


@pytest.mark.imagej
def test_table_csv_opens_in_imagej(ij, tmp_path):
    import jpype

    df = pd.DataFrame({"Area": [1.5, 2.25, np.nan], "Name": ["a", "b c", "d"]},
                      index=pd.Index(["n1", "n2", "n3"], name="Label"))
    path = io.write_table(tmp_path / "t.csv", df)
    ResultsTable = jpype.JClass("ij.measure.ResultsTable")
    rt = ResultsTable.open(str(path))
    assert rt.size() == 3
    assert rt.getValue("Area", 1) == 2.25
    assert str(rt.getStringValue("Name", 1)) == "b c"
    assert str(rt.getLabel(2)) == "n3"
    saved = tmp_path / "ij.csv"
    rt.saveAs(str(saved))
    back = io.read_table(saved)
    assert list(back.columns) == ["Area", "Name"]
    assert list(back.index) == ["n1", "n2", "n3"]
    np.testing.assert_array_equal(back["Area"].values, df["Area"].values)
    pd.testing.assert_frame_equal(io.read_table(path), df)


def test_io_imports_no_java():
    code = textwrap.dedent("""
        import sys, numpy as np
        from ij_bridge import io
        import tempfile, os
        d = tempfile.mkdtemp()
        io.imwrite(os.path.join(d, "a.tif"), np.zeros((3, 4), np.uint8))
        io.imread(os.path.join(d, "a.tif"))
        assert "jpype" not in sys.modules and "scyjava" not in sys.modules, "java imported"
        print("OK")
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK" in proc.stdout


@pytest.mark.imagej
def test_unit_without_resolution_tags_reads_like_imagej(ij, tmp_path):
    """Edge case of ImageJ's reader: a unit in the description but no resolution tags."""
    import tifffile

    from ij_bridge import from_imageplus

    path = tmp_path / "u.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 4), np.uint8), imagej=True,
                     metadata={"axes": "ZYX", "unit": "\\u00B5m", "spacing": 0.25})
    ours, theirs = io.imread(path), from_imageplus(ij.openImage(str(path)))
    _assert_same_image(ours, theirs)
    assert ours.attrs["units"]["x"] == "µm" and ours.attrs["calibration"]["pixel_depth"] == 0.25


@pytest.mark.imagej
@pytest.mark.parametrize("pw, ph, origin, unit", [
    (0.123456789, 0.123456789, 3.7, "micron"), (1e-3, 2e-3, -12.0, "mm"), (250.0, 250.0, 0.5, "nm"),
    (0.0645, 0.0645, 1e6, "µm"), (1.0 / 3.0, 0.2, 0.0, "Å"),
])
def test_random_calibrations_via_tiff(ij, tmp_path, pw, ph, origin, unit):
    from ij_bridge import from_imageplus

    da = xr.DataArray(np.zeros((3, 4, 5), np.uint16), dims=("z", "y", "x"),
                      coords={"x": (np.arange(5) - origin) * pw, "y": (np.arange(4) - origin) * ph,
                              "z": (np.arange(3) - origin) * 0.3},
                      attrs={"units": {"x": unit, "y": unit, "z": unit}})
    path = io.imwrite(tmp_path / "c.tif", da)
    imp = ij.openImage(str(path))
    cal = imp.getCalibration()
    assert cal.pixelWidth == pytest.approx(pw, rel=5e-16) and cal.pixelHeight == pytest.approx(ph, rel=5e-16)
    assert cal.pixelDepth == pytest.approx(0.3, rel=1e-15)
    assert cal.xOrigin == pytest.approx(origin, rel=1e-12, abs=1e-12)
    assert str(cal.getUnit()) == unit
    _assert_same_image(io.imread(path), from_imageplus(imp))


@pytest.mark.imagej
def test_zlib_compressed_file_opens_in_imagej(ij, tmp_path):
    from ij_bridge import from_imageplus

    a = np.random.default_rng(0).integers(0, 60000, (3, 40, 50), dtype=np.uint16)
    path = io.imwrite(tmp_path / "z.tif", a, dims="zyx", compression="zlib")
    np.testing.assert_array_equal(from_imageplus(ij.openImage(str(path))).values, a)
    np.testing.assert_array_equal(io.imread(path).values, a)
