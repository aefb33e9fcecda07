"""The Java-class accessor (imagej/_java.py) and the window helpers (imagej/windows.py)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import run_python

pytestmark = pytest.mark.imagej


def test_jc_before_the_jvm_says_how_to_start_it():
    r = run_python(
        "from ij_bridge.imagej._java import jc, JVMNotStartedError\n"
        "import jpype\n"
        "try:\n"
        "    jc.IJ\n"
        "except JVMNotStartedError as e:\n"
        "    print('ERR', e)\n"
        "print('JVM', jpype.isJVMStarted())\n")
    assert r.returncode == 0, r.stderr
    assert "ERR the Java class ij.IJ is needed" in r.stdout and "ij_bridge.start()" in r.stdout
    assert "JVM False" in r.stdout  # asking started nothing


def test_jc_resolves_once_and_refuses_unknown_short_names(ij):
    from ij_bridge.imagej._java import CLASSES, jc

    assert jc.IJ is jc("ij.IJ") is ij
    assert str(jc.RoiManager.class_.getName()) == "ij.plugin.frame.RoiManager"
    assert str(jc("ij.plugin.Duplicator").class_.getName()) == "ij.plugin.Duplicator"
    for short, full in CLASSES.items():  # every short name is a real class of this ImageJ/JDK
        assert str(getattr(jc, short).class_.getName()) == full
    with pytest.raises(AttributeError, match="jc\\('package.RoiManger'\\)"):
        jc.RoiManger  # noqa: B018 - a typo
    with pytest.raises(AttributeError, match="read-only"):
        jc.IJ = None


def _show(title: str, value: int = 0):
    from ij_bridge.imagej.images import to_imageplus

    imp = to_imageplus(xr.DataArray(np.full((8, 9), value, np.uint8), dims=("y", "x")), title=title)
    imp.show()
    return imp


def test_open_images_titles_and_unique_titles(clean_imagej):
    from ij_bridge.imagej import windows

    assert windows.image_ids() == [] and windows.open_titles() == []
    assert windows.image_by_title("a") is None
    assert windows.unique_title("a") == "a"
    _show("a", 1)
    _show("b", 2)
    newer = _show("a", 3)
    assert windows.open_titles() == ["a", "b", "a"]
    assert len(windows.image_ids()) == 3 and all(i < 0 for i in windows.image_ids())
    found = windows.image_by_title("a")
    assert found is not None and int(found.getID()) == int(newer.getID())  # the newest of equals
    assert windows.unique_title("a") == "a-2"
    _show("a-2")
    assert windows.unique_title("a") == "a-3"
    assert windows.unique_title("c") == "c"


def test_close_all_images_asks_nothing(clean_imagej):
    from ij_bridge.imagej import windows

    imp = _show("changed")
    imp.changes = True  # would ask "save changes?" on a plain close
    _show("other")
    assert windows.close_all_images() == 2
    assert windows.image_ids() == []


def test_reset_leaves_no_images_tables_rois_results_or_log(clean_imagej):
    from ij_bridge.imagej import windows
    from ij_bridge.imagej._java import jc

    IJ = clean_imagej
    imp = _show("img", 5)
    imp.changes = True
    rm = windows.roi_manager(create=True)
    rm.reset()
    rm.addRoi(jc("ij.gui.Roi")(1, 1, 3, 3))
    IJ.run(imp, "Measure", "")
    table = jc.ResultsTable()
    table.addValue("v", 1.0)
    table.show("Other table")
    IJ.log("a line")
    assert int(rm.getCount()) == 1 and int(jc.ResultsTable.getResultsTable().size()) == 1
    assert jc.WindowManager.getWindow("Other table") is not None
    jc.Interpreter.batchMode = True

    windows.reset()

    assert windows.image_ids() == []
    assert int(rm.getCount()) == 0
    assert int(jc.ResultsTable.getResultsTable().size()) == 0
    assert jc.WindowManager.getWindow("Other table") is None
    assert jc.WindowManager.getWindow("Results") is None
    assert not bool(jc.Interpreter.batchMode)
    log = IJ.getLog()
    assert log is None or "a line" not in str(log)
