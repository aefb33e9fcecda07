"""StarDist's ``axes=`` for numpy input (read by ij_bridge.layout), as N2V has."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from ij_bridge.stardist import StarDist2D, StarDist3D, StarDistConfig
from ij_bridge.synthetic import synthetic_nuclei


@pytest.fixture(scope="module")
def bundled():
    return StarDist2D.from_pretrained("stardist_nuclei2d", device="cpu")


@pytest.fixture(scope="module")
def image():
    x, _ = synthetic_nuclei((96, 112), n_objects=8, seed=4)
    return x


def test_axes_reorder_and_drop_size_one_axes_like_the_default_layout(bundled, image):
    want, det = bundled.predict_instances(image)
    assert det["prob"].size >= 4  # the comparison below is about real objects
    for arr, axes in [(image.T, "XY"), (image[None], "CYX"), (image[None], "TYX"),
                      (image[:, None, :], "ycx"), (image[None, None], "tzyx")]:
        got, _ = bundled.predict_instances(arr, axes=axes)
        np.testing.assert_array_equal(got, want, err_msg=axes)
    prob, dist = bundled.predict(image.T, axes="XY")
    p0, d0 = bundled.predict(image)
    np.testing.assert_array_equal(prob, p0)
    np.testing.assert_array_equal(dist, d0)


def test_rgb_samples_are_channels_to_a_three_channel_model(image):
    m = StarDist2D(StarDistConfig(n_channels=3, n_rays=8, unet_depth=1, unet_n_filters=4), device="cpu")
    rgb = np.stack([image, 0.5 * image, 0.25 * image], axis=-1)
    a = m.predict(rgb)[0]                                  # (Y, X, C) by default
    b = m.predict(np.moveaxis(rgb, -1, 0), axes="SYX")[0]  # RGB samples first
    c = m.predict(xr.DataArray(rgb, dims=("y", "x", "s")))[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_bad_axes_give_one_clear_line_before_work(bundled, image):
    with pytest.raises(ValueError, match=r"axes 'YX' name 2 axes but the array has 3"):
        bundled.predict_instances(image[None], axes="YX")
    with pytest.raises(ValueError, match=r"extra dims \['z'\].*3D model"):
        bundled.predict_instances(np.stack([image, image]), axes="ZYX")
    with pytest.raises(ValueError, match=r"unknown axis 'Q'"):
        bundled.predict_instances(image, axes="QX")
    with pytest.raises(ValueError, match="needs"):
        StarDist3D(StarDistConfig(ndim=3, n_rays=8, unet_depth=1, unet_n_filters=4,
                                  grid=(1, 2, 2)), device="cpu").predict(image, axes="YX")


def _weights(model):
    return [v.clone() for v in model.net.state_dict().values()]


def test_training_with_axes_equals_training_in_the_default_layout():
    X, Y = [], []
    for s in (1, 2):
        x, y = synthetic_nuclei((48, 48), n_objects=5, radius=(5, 7), seed=s)
        X.append(x)
        Y.append(y)
    cfg = StarDistConfig(n_rays=8, grid=(2, 2), patch_size=(32, 32), batch_size=2, epochs=1,
                         steps_per_epoch=2, unet_depth=1, unet_n_filters=4, seed=2)
    a = StarDist2D(cfg, device="cpu")
    a.train(X, Y, show_progress=False, optimize_thresholds=False)
    # images as (C, X, Y), labels as (X, Y): the same data in another order
    b = StarDist2D(cfg, device="cpu")
    b.train([x.T[None] for x in X], [y.T for y in Y], axes="CXY", show_progress=False,
            optimize_thresholds=False)
    # xarray labels are read by their dims too
    c = StarDist2D(cfg, device="cpu")
    c.train(X, [xr.DataArray(y.T, dims=("x", "y")) for y in Y], show_progress=False,
            optimize_thresholds=False)
    for wa, wb, wc in zip(_weights(a), _weights(b), _weights(c)):
        assert torch.equal(wa, wb) and torch.equal(wa, wc)
    assert a.history["loss"] == b.history["loss"]
