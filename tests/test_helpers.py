"""PyImageJ's notebook conveniences (issue 15, items 5, 7, 8): real ImageJ, real commands.

active_imageplus / active_xarray / sync_image, run_command's created images, run_plugin
for ImageJ's own commands with errors raised in Python, show(), the "gui" mode name,
HeadlessError in headless mode (a fresh process), the CLI's warning lines, and the
history tables that StarDist2D.train and N2V.train return.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from conftest import REPO, run_python


def _select(imp, timeout: float = 10.0, steady: float = 0.3) -> bool:
    """Make ``imp`` ImageJ's active image and wait until it stays so.

    Window activation reaches ImageJ asynchronously: a window shown a moment earlier can be
    activated by its late AWT event after ``setCurrentWindow`` and take the active image back
    (CI saw that once, on a loaded machine). So ``imp`` is made current again whenever another
    image is, the AWT queue is drained on every poll, and the answer is yes only once ``imp`` has
    stayed current for ``steady`` seconds.
    """
    import jpype

    WindowManager = jpype.JClass("ij.WindowManager")
    EventQueue = jpype.JClass("java.awt.EventQueue")
    Thread = jpype.JClass("java.lang.Thread")
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        current = WindowManager.getCurrentImage()
        if current is not None and current.getID() == imp.getID():
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= steady:
                return True
        else:
            since = None
            if imp.getWindow() is not None:
                WindowManager.setCurrentWindow(imp.getWindow())
        EventQueue.invokeAndWait(Thread())   # a no-op Runnable: every pending AWT event has run
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- active image
@pytest.mark.imagej
def test_active_imageplus_and_active_xarray(clean_imagej):
    import ij_bridge

    assert ij_bridge.active_imageplus() is None and ij_bridge.active_xarray() is None
    a = xr.DataArray(np.arange(20 * 30, dtype=np.uint16).reshape(20, 30), dims=("y", "x"),
                     coords={"y": 0.5 * np.arange(20), "x": 0.5 * np.arange(30)},
                     attrs={"units": {"y": "µm", "x": "µm"}})
    imp_a = ij_bridge.to_imageplus(a, title="first")
    imp_a.show()
    stack = np.stack([np.full((16, 16), k, np.float32) for k in range(3)])
    imp_b = ij_bridge.to_imageplus(stack, title="second", dims="zyx")
    imp_b.show()
    assert _select(imp_b)
    active = ij_bridge.active_imageplus()
    assert active.getID() == imp_b.getID() and str(active.getTitle()) == "second"
    assert _select(imp_a)
    got = ij_bridge.active_xarray()
    assert got.dims == ("y", "x") and got.attrs["title"] == "first"
    np.testing.assert_array_equal(got.values, a.values)
    assert float(got.x[1] - got.x[0]) == 0.5 and got.attrs["units"]["x"] == "µm"

    # sync: pixels set through the processor reach the stack (and so from_imageplus) only with sync
    assert _select(imp_b)
    imp_b.setSlice(2)
    ip = imp_b.getProcessor()
    edited = ip.duplicate()
    edited.set(42.0)
    ip.setPixels(edited.getPixels())  # the processor now holds another array than the stack's plane 2
    stale = ij_bridge.active_xarray(sync=False)
    assert float(stale.values[1].max()) == 1.0            # the stack still has the old plane
    synced = ij_bridge.active_xarray()                     # sync=True, PyImageJ's default
    assert float(synced.values[1].min()) == 42.0 and float(synced.values[0].max()) == 0.0
    assert float(synced.values[2].min()) == 2.0


# --------------------------------------------------------------------------- run_command / run_plugin
@pytest.mark.imagej
def test_run_command_returns_the_images_it_created(clean_imagej):
    import ij_bridge
    from ij_bridge.commands import CommandError, run_command

    labels = np.zeros((40, 50), np.uint16)
    labels[5:15, 5:20] = 1
    labels[20:35, 25:45] = 2
    imp = ij_bridge.to_imageplus(labels, title="lab")
    imp.show()
    assert run_command("Labels to ROIs", "labels=lab position=Automatic") == []   # fills the ROI Manager only
    assert len(ij_bridge.get_roi_manager_rois()) == 2
    created = run_command("ROIs to Labels", "image=lab")
    assert len(created) == 1
    back = ij_bridge.from_imageplus(created[0])
    np.testing.assert_array_equal(back.values.astype(np.uint16), labels)
    # no options: the dialog nobody can answer under the virtual display is closed, never waited on
    t0 = time.monotonic()
    with pytest.raises(CommandError, match=r"dialog was closed.*run_command\('ROIs to Labels', \"image=\.\.\.\"\)"):
        run_command("ROIs to Labels", "", imp=imp)
    with pytest.raises(CommandError, match="dialog was closed"):
        ij_bridge.run_plugin("ROIs to Labels", imp=imp)
    assert time.monotonic() - t0 < 30
    # ImageJ's own commands are run_plugin's; run_command says so
    with pytest.raises(KeyError, match=r"ImageJ command.*run_plugin\('Gaussian Blur\.\.\.'"):
        run_command("Gaussian Blur...", "sigma=2")


@pytest.mark.imagej
def test_run_plugin_runs_imagej_commands_and_raises_their_errors(clean_imagej):
    import ij_bridge
    from ij_bridge.commands import CommandError, argstring

    with pytest.raises(CommandError, match="There are no images open"):
        ij_bridge.run_plugin("Gaussian Blur...", "sigma=2")
    rng = np.random.default_rng(0)
    pixels = rng.normal(100, 20, (32, 32)).astype(np.float32)
    imp = ij_bridge.to_imageplus(pixels, title="noisy")
    imp.show()
    assert _select(imp)
    # a dict of arguments, as PyImageJ's run_plugin takes them; blurring in place opens nothing
    assert ij_bridge.run_plugin("Gaussian Blur...", {"sigma": 2}, imp=imp) == []
    blurred = ij_bridge.from_imageplus(imp).values
    assert blurred.std() < 0.5 * pixels.std()
    copies = ij_bridge.run_plugin("Duplicate...", {"title": "the copy"}, imp=imp)
    assert [str(c.getTitle()) for c in copies] == ["the copy"]
    np.testing.assert_array_equal(ij_bridge.from_imageplus(copies[0]).values, blurred)
    with pytest.raises(CommandError, match=r'Numeric value expected.*Key: "sigma"'):
        ij_bridge.run_plugin("Gaussian Blur...", "sigma=abc", imp=imp)
    # no options: the dialog opens; under the virtual display it is closed, never waited on
    t0 = time.monotonic()
    with pytest.raises(CommandError, match="dialog asked for input.*pass the values as options"):
        ij_bridge.run_plugin("Gaussian Blur...", imp=imp)
    assert time.monotonic() - t0 < 20
    with pytest.raises(KeyError, match=r"no command named 'Gausian Blur\.\.\.'.*'Gaussian Blur\.\.\.'"):
        ij_bridge.run_plugin("Gausian Blur...", "sigma=2")
    # an IJ Bridge command through run_plugin: its own error as a CommandError
    with pytest.raises(CommandError, match="no open image titled 'nope'"):
        ij_bridge.run_plugin("Measure Labels", {"labels": "nope"})
    assert argstring({"sigma": 2, "stack": True, "scaled": False, "title": "a b"}) == \
        "sigma=2 stack title=[a b]"
    assert argstring({"stack": True, "scaled": False}, ij1_style=False) == "stack=true scaled=false"
    with pytest.raises(TypeError, match="None"):
        argstring({"sigma": None})


# --------------------------------------------------------------------------- show
@pytest.mark.imagej
def test_show_draws_image_labels_and_rois(clean_imagej, tmp_path):
    import matplotlib

    matplotlib.use("Agg")  # the test process has a (virtual) DISPLAY: never a GUI backend here
    import matplotlib.pyplot as plt

    import ij_bridge

    img = np.zeros((40, 60), np.float32)
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 5:20] = 1
    labels[20:35, 30:50] = 2
    img[labels > 0] = 10
    rois = ij_bridge.labels_to_rois(labels)
    ax = ij_bridge.show(img, labels=labels, rois=rois, title="nuclei")
    assert len(ax.get_images()) == 2 and len(ax.lines) == 2 and ax.get_title() == "nuclei"
    overlay = ax.get_images()[1].get_array()
    assert overlay.mask[0, 0] and not overlay.mask[10, 10]          # background transparent
    # the outline of object 1 runs along its pixel edges (drawn in pixel-centre coordinates)
    xs, ys = ax.lines[0].get_data()
    assert min(xs) == 4.5 and max(xs) == 19.5 and min(ys) == 4.5 and max(ys) == 14.5
    ax.figure.savefig(tmp_path / "show.png")
    assert (tmp_path / "show.png").stat().st_size > 1000
    plt.close("all")

    # an ImagePlus: its title and its overlay's ROIs
    imp = ij_bridge.to_imageplus(img, title="with overlay")
    ij_bridge.set_overlay_rois(imp, rois)
    ax = ij_bridge.show(imp)
    assert ax.get_title() == "with overlay" and len(ax.lines) == 2
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), img)
    # labels alone, in the label colours: two distinct colours, background black
    ax = ij_bridge.show(labels=labels)
    cmap = ax.get_images()[0].get_cmap()
    assert tuple(cmap(0)[:3]) == (0.0, 0.0, 0.0) and cmap(1) != cmap(2)
    plt.close("all")
    with pytest.raises(ValueError, match=r"one plane.*isel\(z=0\)"):
        ij_bridge.show(xr.DataArray(np.zeros((3, 8, 8)), dims=("z", "y", "x")))
    with pytest.raises(ValueError, match="shape"):
        ij_bridge.show(img, labels=labels[:20])


# --------------------------------------------------------------------------- modes
def test_gui_is_pyimagej_name_for_the_shown_window():
    """start(mode="gui") means mode="interactive" (no JVM starts: it needs a DISPLAY first)."""
    from ij_bridge.imagej import runtime

    assert runtime._canonical_mode("gui") == "interactive"
    with pytest.raises(ValueError, match="'gui'"):
        runtime._canonical_mode("window")
    code = textwrap.dedent("""
        import ij_bridge
        from ij_bridge.imagej.runtime import HeadlessError
        try:
            ij_bridge.start(mode="gui")
        except HeadlessError as e:
            print("ERR", e)
        import jpype
        print("JVM", jpype.isJVMStarted())
    """)
    proc = run_python(code, env={"DISPLAY": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR mode='interactive' needs a DISPLAY" in proc.stdout and "JVM False" in proc.stdout


@pytest.mark.imagej
def test_headless_run_command_and_run_plugin_raise_headless_error():
    code = textwrap.dedent("""
        import numpy as np, ij_bridge
        from ij_bridge.imagej.runtime import HeadlessError
        ij_bridge.start(mode="headless")
        imp = ij_bridge.to_imageplus(np.zeros((8, 8), np.uint8), title="a")   # conversions work
        for call in (lambda: ij_bridge.run_command("Labels to ROIs", "labels=a", imp),
                     lambda: ij_bridge.run_plugin("Gaussian Blur...", "sigma=2", imp=imp)):
            try:
                call()
                print("NO ERROR")
            except HeadlessError as e:
                print("HEADLESS", e)
            except BaseException as e:
                print("OTHER", type(e).__name__, e)
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("HEADLESS") for line in lines), proc.stdout
    assert "run_command('Labels to ROIs') needs a display" in lines[0]
    assert "run_plugin('Gaussian Blur...') needs a display" in lines[1]
    assert all("mode='virtual'" in line for line in lines)
    assert "HeadlessException" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- train() return types
def test_stardist_and_n2v_train_return_the_same_kind_of_history_table():
    import pandas as pd

    from ij_bridge.n2v import N2V, N2VConfig
    from ij_bridge.stardist import StarDist2D, StarDistConfig, optimize_thresholds
    from ij_bridge.stardist.training import history_table
    from ij_bridge.synthetic import synthetic_nuclei

    X, Y = zip(*(synthetic_nuclei((64, 64), n_objects=6, radius=(5, 8), seed=s) for s in range(3)))
    sd = StarDist2D(StarDistConfig(n_rays=8, patch_size=(32, 32), batch_size=2, epochs=2,
                                   steps_per_epoch=2, seed=0), device="cpu")
    sd_hist = sd.train(list(X[:2]), list(Y[:2]), validation_data=([X[2]], [Y[2]]),
                       show_progress=False, optimize_thresholds=False)
    n2v = N2V(N2VConfig(axes="YX", patch_size=(16, 16), batch_size=2, epochs=2, steps_per_epoch=2,
                        unet_filters=4, neighborhood_radius=2, masked_fraction=0.02), device="cpu")
    n2v_hist = n2v.train(np.random.default_rng(0).normal(100, 10, (40, 48)).astype(np.float32),
                         show_progress=False)
    for hist in (sd_hist, n2v_hist):
        assert isinstance(hist, pd.DataFrame) and len(hist) == 2 and list(hist["epoch"]) == [1, 2]
    common = ["epoch", "train_loss", "val_loss", "lr", "seconds", "best"]
    assert set(common) <= set(sd_hist.columns) and set(common) <= set(n2v_hist.columns)
    for col in common:
        assert sd_hist[col].dtype.kind == n2v_hist[col].dtype.kind, col
    assert {"prob_loss", "dist_loss", "val_f1", "val_accuracy"} <= set(sd_hist.columns)
    assert sd_hist["best"].sum() == 1 and np.isfinite(sd_hist["val_f1"]).all()
    # the model keeps the dict of history.json; the table is made from it
    assert sd_hist["train_loss"].tolist() == sd.history["loss"]
    pd.testing.assert_frame_equal(history_table(sd.history), sd_hist)
    # without validation data: NaN validation columns, the kept (last best-loss) epoch marked
    no_val = history_table({"epoch": [1], "loss": [0.5], "prob_loss": [0.2], "dist_loss": [0.3],
                            "lr": [1e-3], "seconds": [0.1], "best_epoch": [1]})
    assert np.isnan(no_val["val_loss"]).all() and no_val["best"].tolist() == [True]

    # optimize_thresholds as a method, as the original has: the function's result, set on the model
    got = sd.optimize_thresholds([X[2]], [Y[2]], nms_threshs=(0.3, 0.5), iou_threshs=(0.5,))
    assert set(got) == {"prob", "nms", "score"} and sd.thresholds == {"prob": got["prob"], "nms": got["nms"]}
    again = optimize_thresholds(sd, [X[2]], [Y[2]], nms_threshs=(0.3, 0.5), iou_threshs=(0.5,))
    assert again == got


# --------------------------------------------------------------------------- CLI warnings
def test_cli_warning_is_one_clean_line(tmp_path):
    """A warning raised while the CLI runs is one 'ij-bridge: warning: ...' line on stderr."""
    import tifffile

    tifffile.imwrite(tmp_path / "noisy.tif",
                     np.random.default_rng(0).normal(100, 10, (40, 48)).astype(np.float32))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's default filters
    proc = subprocess.run(
        [sys.executable, "-m", "ij_bridge.cli", "n2v", "train", "noisy.tif", "--model", "m.zip",
         "--epochs", "1", "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--quiet",
         "--device", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    warned = [line for line in lines if "warning" in line.lower()]
    assert warned == ["ij-bridge: warning: image too small to hold out a validation band of one "
                      "patch; validating on the training image (pass validation= in Python or --val IMAGE "
                      "on the command line for an independent estimate)"], proc.stderr
    assert ".py:" not in proc.stderr and "UserWarning" not in proc.stderr
    assert (tmp_path / "m.zip").is_file()


def test_cli_warning_format_and_restore():
    import warnings

    from ij_bridge.cli import _clean_warnings, format_warning

    assert format_warning(UserWarning("a\n  b"), UserWarning) == "ij-bridge: warning: a b"
    assert format_warning("x", RuntimeWarning) == "ij-bridge: warning: x (RuntimeWarning)"
    before = warnings.showwarning
    with _clean_warnings():
        assert warnings.showwarning is not before
    assert warnings.showwarning is before   # main([...]) in a test leaves the process as it was


@pytest.mark.parametrize("argv", [["info", "--mode", "gui"], ["info", "--mode", "interactive"]])
def test_cli_window_mode_without_display_is_one_line(argv, tmp_path):
    """`--mode gui` (PyImageJ's name) is accepted by the CLI; without a DISPLAY it is one
    error line naming the fix and exit status 2, not a traceback."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    r = subprocess.run([sys.executable, "-m", "ij_bridge.cli", *argv], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "DISPLAY" in lines[0] and "virtual" in lines[0], r.stderr
