"""ij_bridge.layout: one alias table, axes= strings, dtype and calibration rules (no Java).

The module's own examples run with ``pytest --doctest-modules src/ij_bridge/layout.py``;
these tests check that the modules that read images use its one table and rules, through
their public functions and real files.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from ij_bridge import io, layout
from ij_bridge.n2v.data import XARRAY_DIMS, to_samples


def _noisy(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------------------- one table
def test_every_reader_uses_the_one_alias_table():
    assert io.normalise_dims is layout.normalise_dims
    assert io.LossyConversionWarning is layout.LossyConversionWarning
    assert io.DIM_ORDER == layout.DIM_ORDER == ("t", "c", "z", "y", "x", "s")
    assert layout.IMAGEJ_ORDER == ("t", "z", "c", "y", "x", "s")
    # N2V understands exactly the names of the table, RGB samples as channels
    assert set(XARRAY_DIMS) == set(layout.ALIASES)
    assert {XARRAY_DIMS[n] for n, d in layout.ALIASES.items() if d == "s"} == {"C"}
    # every alias names the same dim in a file written by io
    for name, dim in layout.ALIASES.items():
        if dim in ("s", "y", "x"):
            continue
        da = xr.DataArray(np.zeros((2, 3, 4), np.uint8), dims=(name.upper(), "row", "col"))
        assert io.as_dataarray(da, None)[1] == (dim, "y", "x")


def test_s_means_rgb_samples_everywhere(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    io.imwrite(tmp_path / "rgb.tif", rgb, dims="yxs")
    back = io.imread(tmp_path / "rgb.tif")
    assert back.dims == ("y", "x", "s") and np.array_equal(back.values, rgb)
    # N2V reads the same xarray dim s as channels
    samples, restore = to_samples(back, None, 2)
    assert samples.shape == (1, 3, 5, 6)
    assert restore(samples).dims == ("y", "x", "s")
    # a model layout puts RGB samples on the channel axis
    assert layout.to_model_layout(rgb, ("y", "x", "s"), ("c", "y", "x")).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="size 3"):
        io.imwrite(tmp_path / "bad.tif", np.zeros((5, 6, 4), np.uint8), dims="yxs")


def test_n2v_old_sample_letter_still_works_with_a_deprecation_warning():
    x = _noisy((3, 2, 16, 16))
    with pytest.warns(DeprecationWarning, match="Write T for a stack"):
        old, restore_old = to_samples(x[:, 0], "SYX", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        new, restore_new = to_samples(x[:, 0], "TYX", 2)
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(restore_old(old), x[:, 0])
    # S and T together (e.g. z slices and frames both as samples) still work
    with pytest.warns(DeprecationWarning):
        both, restore = to_samples(x, "STYX", 2)
    assert both.shape == (6, 1, 16, 16)
    np.testing.assert_array_equal(restore(both), x)
    with pytest.raises(ValueError, match="3 dimensions"):
        to_samples(x[:, 0], "YX", 2)


def test_axes_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown axis 'Q'"):
        layout.parse_axes("QYX")
    with pytest.raises(ValueError, match="twice"):
        layout.parse_axes("YYX")
    with pytest.raises(ValueError, match="must contain Y and X"):
        layout.parse_axes("ZY")
    with pytest.raises(ValueError, match="needs axes="):
        layout.image_dims(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="contradict"):
        layout.image_dims(xr.DataArray(np.zeros((2, 3, 4)), dims=("z", "y", "x")), "CYX")
    with pytest.raises(ValueError, match=r"isel\(t=0\)"):
        layout.to_model_layout(np.zeros((2, 3, 4)), ("t", "y", "x"), ("y", "x", "c"))


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "uint16", "int16", "int32", "uint32",
                                   "int64", "float16", "float32", "float64", ">u2"])
def test_imagej_dtype_is_what_a_file_round_trip_gives(tmp_path, dtype):
    a = (np.arange(12).reshape(3, 4) % 2).astype(dtype)
    io.imwrite(tmp_path / "a.tif", a)
    assert io.imread(tmp_path / "a.tif").dtype == layout.imagej_dtype(dtype)


def test_lossy_conversion_warns_once_and_can_be_made_an_error(tmp_path):
    big = np.array([[2**24, 2**24 + 1]], np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", layout.LossyConversionWarning)
        with pytest.raises(layout.LossyConversionWarning, match="2\\*\\*24"):
            io.imwrite(tmp_path / "big.tif", big)
    assert not (tmp_path / "big.tif").exists()
    with pytest.raises(TypeError, match="ImageJ holds"):
        layout.imagej_dtype(np.complex64)


# ---------------------------------------------------------------------------- calibration
def test_units_are_stored_as_given_and_compared_by_meaning(tmp_path):
    greek = "\u03bcm"  # Greek mu, not ImageJ's micro sign
    for unit, stored in (("um", "µm"), ("micron", "micron"), (greek, greek), ("", "pixel")):
        da = xr.DataArray(np.zeros((3, 4), np.uint8), dims=("y", "x"),
                          coords={"y": 0.5 * np.arange(3), "x": 0.5 * np.arange(4)},
                          attrs={"units": {"x": unit, "y": unit}})
        io.imwrite(tmp_path / "u.tif", da, overwrite=True)
        back = io.imread(tmp_path / "u.tif")
        assert back.attrs["units"]["x"] == stored
        assert layout.same_unit(stored, unit)
        assert layout.pixel_size(back)["x"] == (0.5, stored)
    assert layout.same_unit(greek, "µm") and not layout.same_unit("µm", "nm")


def test_origin_is_pixels_in_imagej_and_physical_in_xarray(tmp_path):
    da = xr.DataArray(np.zeros((3, 4), np.uint16), dims=("y", "x"),
                      coords={"y": 10.0 + 0.25 * np.arange(3), "x": -1.0 + 0.5 * np.arange(4)},
                      attrs={"units": {"x": "um", "y": "um"}})
    cal = layout.calibration_from_dataarray(da, ("y", "x"))
    assert (cal["x_origin"], cal["y_origin"]) == (2.0, -40.0)   # pixels: -coord[0] / step
    io.imwrite(tmp_path / "o.tif", da)
    back = io.imread(tmp_path / "o.tif")
    np.testing.assert_array_equal(back.x, layout.physical_coords(4, 2.0, 0.5))
    np.testing.assert_array_equal(back.x, da.x)
    np.testing.assert_allclose(back.y, da.y, rtol=0, atol=1e-12)


def test_measure_reads_the_units_of_a_file(tmp_path):
    from ij_bridge import measure

    lab = np.zeros((20, 20), np.uint16)
    lab[5:10, 5:10] = 1
    da = xr.DataArray(lab, dims=("y", "x"), coords={"y": 0.5 * np.arange(20), "x": 0.5 * np.arange(20)},
                      attrs={"units": {"x": "um", "y": "um"}})
    io.imwrite(tmp_path / "lab.tif", da)
    df = measure.regionprops_table(io.imread(tmp_path / "lab.tif"))
    assert df["area"].iloc[0] == 25 * 0.25
    assert df.attrs["units"]["area"] == "µm^2"
