"""``ij-bridge batch``: failures recorded, calibration kept, resume after a kill,
the input folder untouched, and the same outputs from 1 worker, 2 worker
processes and a local Dask cluster."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.imagej

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "macros" / "batch_example.ijm"
CLI = str(Path(sys.executable).with_name("ij-bridge"))
PIXEL = 0.25  # micron
GOOD = ["a.tif", "b.tif", "sub/c.tif", "fail_macro.tif"]


def _cli(*args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kw)


def _blobs(path: Path, seed: int, shape=(64, 80)) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(100, 8, shape)
    for _ in range(5):
        cy, cx, r = rng.uniform(9, shape[0] - 9), rng.uniform(9, shape[1] - 9), rng.uniform(3, 6)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 300
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img.clip(0, 65535).astype(np.uint16), imagej=True,
                     resolution=(1 / PIXEL, 1 / PIXEL), metadata={"unit": "micron"})


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as fh:
        return {row["input"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Good calibrated images, a truncated TIFF, an empty file, a text file."""
    d = tmp_path_factory.mktemp("batch_in")
    for i, name in enumerate(GOOD):
        _blobs(d / name, i)
    good = (d / "a.tif").read_bytes()
    (d / "corrupt.tif").write_bytes(good[:400])
    (d / "empty.tif").write_bytes(b"")
    (d / "notes.txt").write_text("not an image\n")
    return d


@pytest.fixture(scope="module")
def macro(tmp_path_factory) -> Path:
    """The shipped example, plus an ImageJ error for files named fail*."""
    d = tmp_path_factory.mktemp("batch_macro")
    path = d / "example_with_failure.ijm"
    path.write_text('if (startsWith(getTitle(), "fail")) run("Convolve...", "text1=[1 1 1]");\n'
                    + EXAMPLE.read_text())
    return path


@pytest.fixture(scope="module")
def single(inputs, macro, tmp_path_factory):
    """One run with one worker (ImageJ in the CLI process)."""
    before = _tree_hash(inputs)
    out = tmp_path_factory.mktemp("batch_out") / "out1"
    r = _cli("batch", str(macro), "--input", str(inputs), "--output", str(out), "--pattern", "**/*")
    return r, out, before


def test_failures_are_recorded_and_outputs_are_calibrated(single, inputs):
    r, out, before = single
    assert r.returncode == 1, r.stderr  # some files failed
    assert "3 of 7 files OK, 4 failed" in r.stdout
    rows = _summary(out)
    assert set(rows) == {"a.tif", "b.tif", "sub/c.tif", "fail_macro.tif", "corrupt.tif", "empty.tif",
                         "notes.txt"}
    for name in ("a.tif", "b.tif", "sub/c.tif"):
        assert rows[name]["status"] == "ok", rows[name]
        assert float(rows[name]["seconds"]) > 0
    assert rows["corrupt.tif"]["status"] == "failed" and "truncated TIFF" in rows["corrupt.tif"]["error"]
    assert rows["empty.tif"]["status"] == "failed" and "empty file" in rows["empty.tif"]["error"]
    assert rows["notes.txt"]["status"] == "failed" and "not an image" in rows["notes.txt"]["error"]
    assert rows["fail_macro.tif"]["status"] == "failed"
    assert "Kernel must be square" in rows["fail_macro.tif"]["error"]  # ImageJ's own message
    # failed files leave no outputs (only their record, and the Log when there is one)
    assert {p.name for p in (out / "fail_macro").iterdir()} <= {".ij-bridge.json", "log.txt"}
    # the layout follows the input names
    c = out / "sub" / "c"
    assert rows["sub/c.tif"]["output_dir"] == str(c)
    assert set(rows["sub/c.tif"]["outputs"].split(";")) == {
        "counts.tsv", "c.tif", "rois.zip", "results.csv", "Summary.csv", "log.txt"}
    # calibration kept in the saved image and used in the measurements
    from roifile import roiread

    from ij_bridge.io import imread, read_table

    da = imread(c / "c.tif")
    assert da.attrs["calibration"]["pixel_width"] == pytest.approx(PIXEL)
    assert da.attrs["units"]["x"] in ("micron", "µm")
    src = tifffile.imread(inputs / "sub" / "c.tif")
    np.testing.assert_array_equal(da.values, src)  # the macro measured on, and kept, the original
    results = read_table(c / "results.csv")
    rois = roiread(c / "rois.zip")
    assert len(rois) == len(results) > 0
    counts = (c / "counts.tsv").read_text()
    assert counts.strip() == f"objects\t{len(rois)}"
    # areas in µm²: within each ROI's bounding box (in pixels) times PIXEL²
    for roi, area in zip(rois, results["Area"]):
        box = (roi.right - roi.left) * (roi.bottom - roi.top) * PIXEL**2
        assert 0.3 * box <= area <= box
    assert results["X"].max() < 80 * PIXEL  # centroids in µm
    record = json.loads((c / ".ij-bridge.json").read_text())
    assert record["status"] == "ok" and record["input"] == "sub/c.tif"
    # the input folder is byte-identical
    assert _tree_hash(inputs) == before
    assert not (out / ".ij-bridge-staging").exists()


def test_output_inside_input_is_refused(inputs, macro):
    before = _tree_hash(inputs)
    for target in (inputs, inputs / "results"):
        r = _cli("batch", str(macro), "--input", str(inputs), "--output", str(target), timeout=60)
        assert r.returncode == 2
        assert "never writes into its input" in r.stderr
    assert _tree_hash(inputs) == before


def test_resume_after_kill_redoes_only_missing(tmp_path, macro):
    inp = tmp_path / "in"
    n = 10
    for i in range(n):
        _blobs(inp / f"img{i:02d}.tif", 100 + i, shape=(40, 48))
    before = _tree_hash(inp)
    slow = tmp_path / "slow.ijm"
    slow.write_text("wait(400);\n" + macro.read_text())
    out = tmp_path / "out"
    proc = subprocess.Popen([CLI, "batch", str(slow), "--input", str(inp),
                             "--output", str(out), "--quiet"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline:
            if len(list(out.glob("*/.ij-bridge.json"))) >= 3:
                break
            assert proc.poll() is None, "the batch ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/.ij-bridge.json")}
    assert 3 <= len(done_before) < n
    # a killed run leaves no finished-looking folder for unfinished files
    for d in out.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            assert (d / ".ij-bridge.json").exists(), d

    r = _cli("batch", str(slow), "--input", str(inp), "--output", str(out), "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = _summary(out)
    assert len(rows) == n and all(row["status"] == "ok" for row in rows.values())
    resumed = {Path(k).stem for k, row in rows.items() if row["resumed"] == "True"}
    assert resumed == set(done_before)
    # the files done before were not touched again
    for name, mtime in done_before.items():
        assert (out / name / ".ij-bridge.json").stat().st_mtime_ns == mtime
    assert f"{len(done_before)} done before" in r.stdout
    assert not (out / ".ij-bridge-staging").exists()
    assert _tree_hash(inp) == before


def _comparable(out: Path) -> dict[str, str]:
    """Hashes of every output except the per-run records and the Logs of failed files
    (ImageJ's error text there holds Java object ids)."""
    failed = {k for k, v in _summary(out).items() if v["status"] != "ok"}
    failed_dirs = {Path(v["output_dir"]).relative_to(out).as_posix() + "/" for k, v in _summary(out).items()
                   if k in failed}
    return {k: v for k, v in _tree_hash(out).items()
            if not k.endswith((".ij-bridge.json", "summary.csv")) and not k.startswith(tuple(failed_dirs))}


def test_two_workers_and_dask_give_the_same_outputs(single, inputs, macro, tmp_path):
    _, out1, before = single
    reference = _comparable(out1)
    statuses = {k: v["status"] for k, v in _summary(out1).items()}

    out2 = tmp_path / "workers2"
    r = _cli("batch", str(macro), "--input", str(inputs), "--output", str(out2), "--pattern", "**/*",
             "--workers", "2", "--quiet", timeout=240)
    assert r.returncode == 1, r.stderr
    rows = _summary(out2)
    assert {k: v["status"] for k, v in rows.items()} == statuses
    assert len({v["worker"] for v in rows.values() if v["worker"]}) == 2  # two processes did the work
    assert _comparable(out2) == reference

    from dask.distributed import Client, LocalCluster

    from ij_bridge.batch import run_batch

    out3 = tmp_path / "dask"
    # distributed's Nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1,
    # PYTHONHASHSEED, ...) into this process's os.environ and leaves it there; every process a
    # later test starts would then train torch on one thread, so the environment is put back
    environ = dict(os.environ)
    try:
        with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            report = run_batch(macro, inputs, out3, pattern="**/*", scheduler=client, show_progress=False)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert {r.input: r.status for r in report.results} == statuses
    assert _summary(out3)["empty.tif"]["error"] == _summary(out1)["empty.tif"]["error"]
    assert _comparable(out3) == reference
    assert _tree_hash(inputs) == before


def test_a_crashing_file_does_not_end_the_batch(tmp_path, macro):
    """A JVM that dies on one file (here: the macro calls System.exit) is replaced; a macro
    that overwrites its input is a failure, and the batch stops there."""
    inp = tmp_path / "in"
    for name in ("a.tif", "crash.tif", "d.tif", "save_input.tif", "z.tif"):
        _blobs(inp / name, len(name), shape=(32, 40))
    crash = tmp_path / "crash.ijm"
    crash.write_text('if (startsWith(getTitle(), "crash")) call("java.lang.System.exit", "3");\n'
                     'if (startsWith(getTitle(), "save")) { wait(50); run("Add...", "value=1"); run("Save"); }\n'
                     + macro.read_text())
    out = tmp_path / "out"
    r = _cli("batch", str(crash), "--input", str(inp), "--output", str(out), "--quiet")
    assert r.returncode == 1, r.stderr
    rows = _summary(out)
    assert [rows[k]["status"] for k in ("a.tif", "crash.tif", "d.tif")] == ["ok", "failed", "ok"]
    assert "died (exit status 3)" in rows["crash.tif"]["error"]
    assert rows["save_input.tif"]["status"] == "failed"
    assert "changed or removed its input file" in rows["save_input.tif"]["error"]
    # the batch stopped at the file whose input the macro changed (issue 12, item 9)
    assert rows["z.tif"]["status"] == "failed"
    assert rows["z.tif"]["error"].startswith("not run: the batch stopped at save_input.tif")
    assert rows["a.tif"]["worker"] != rows["d.tif"]["worker"]  # a new worker took over
    assert not (out / "crash").exists()  # nothing that --resume could take as done


def test_in_process_run_uses_this_imagej(clean_imagej, single, inputs, macro, tmp_path):
    """From Python with ImageJ already running, a one-worker batch runs here, same outputs."""
    from ij_bridge.batch import run_batch

    _, out1, before = single
    out = tmp_path / "inproc"
    report = run_batch(macro, inputs, out, pattern="[ab].tif", show_progress=False)
    assert [(r.input, r.status) for r in report.results] == [("a.tif", "ok"), ("b.tif", "ok")]
    assert {r.worker.split(":")[1] for r in report.results} == {str(os.getpid())}
    for name in ("a", "b"):
        for f in (out1 / name).iterdir():
            if f.name != ".ij-bridge.json":
                assert (out / name / f.name).read_bytes() == f.read_bytes(), f
    assert _tree_hash(inputs) == before
