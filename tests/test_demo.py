"""``make demo`` (the main job) end to end, and its outputs opened by ImageJ itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.imagej]


def test_make_demo_runs_the_cli_demo():
    dry = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "ij-bridge demo --output demo_output" in dry.stdout


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    proc = subprocess.run([sys.executable, "-m", "ij_bridge.cli", "demo", "--output", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout


def test_demo_prints_counts_and_step_times(demo_run):
    out, stdout = demo_run
    for step in ("generate", "imagej", "denoise", "segment", "measure"):
        assert re.search(rf"^\s+{step}\s+\d+\.\d s", stdout, re.M), stdout
    assert re.search(r"objects found: \d+ \(truth: 70\)", stdout)
    # per-step progress ticks are not echoed
    assert not re.search(r"\[\d+/\d+\]", stdout)


def test_demo_finds_the_right_number_of_nuclei(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    # stated range: within 10 % of the 70 generated nuclei, and well matched
    assert 63 <= summary["objects_found"] <= 77, summary
    assert summary["f1@0.5"] >= 0.85, summary
    assert summary["rois"] == summary["objects_found"] == summary["results_rows"]


def test_demo_outputs_open_in_imagej_with_calibration(demo_run, clean_imagej):
    import jpype

    out, _ = demo_run
    IJ = clean_imagej
    for name, bit_depth in (("denoised.tif", 32), ("labels.tif", 16), ("input.tif", 16)):
        imp = IJ.openImage(str(out / name))
        assert imp is not None, name
        cal = imp.getCalibration()
        assert imp.getBitDepth() == bit_depth, name
        assert cal.pixelWidth == pytest.approx(0.25, rel=1e-6) and cal.pixelHeight == pytest.approx(0.25, rel=1e-6)
        assert str(cal.getUnit()) == "µm", name
        assert (imp.getWidth(), imp.getHeight()) == (384, 384)
    labels = IJ.openImage(str(out / "labels.tif"))
    n_labels = len(np.unique(np.asarray(labels.getProcessor().getPixels()))) - 1

    RoiManager = jpype.JClass("ij.plugin.frame.RoiManager")
    rm = RoiManager.getRoiManager()
    rm.reset()
    rm.runCommand("Open", str(out / "rois.zip"))
    assert rm.getCount() == n_labels

    ResultsTable = jpype.JClass("ij.measure.ResultsTable")
    rt = ResultsTable.open(str(out / "results.csv"))
    assert rt.size() == n_labels
    area = np.asarray(rt.getColumn("Area"))  # ImageJ's heading (Measure Labels)
    # nuclei of radius 6-12 px at 0.25 µm/px: areas between ~2 and ~40 µm²
    assert 1.0 < np.median(area) < 40.0
