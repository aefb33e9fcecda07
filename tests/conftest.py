"""Shared fixtures.

The JVM starts once per process, so every test that touches ImageJ shares one
ImageJ in ``virtual`` mode (a private Xvfb display, started by the bridge itself).
Tests of other modes run in a subprocess.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# commands remember the models they used (workflows.models.remember_model); a test run keeps
# that list in a throwaway folder (children inherit it), never in the user's ~/.config
if not os.environ.get("IJ_BRIDGE_CONFIG_DIR"):
    import tempfile

    os.environ["IJ_BRIDGE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="ij_bridge_test_config_")


def _restore_environ(saved: dict) -> None:
    """Put back environment variables saved as ``{name: value or None}`` (None: was unset)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


#: what sets how many threads a process that a test starts computes with
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "IJ_BRIDGE_TORCH_THREADS")


@pytest.fixture(autouse=True)
def _thread_variables_unchanged():
    """Fail a test that leaves another thread count in this process's environment.

    Every process a later test starts would inherit it: a LocalCluster once left
    OMP_NUM_THREADS=1 behind, and the demo then trained on one core, twice as slowly.
    """
    before = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    yield
    after = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    changed = {k: (before[k], after[k]) for k in _THREAD_VARIABLES if before[k] != after[k]}
    _restore_environ({k: before[k] for k in changed})  # so that one leak fails one test
    assert not changed, f"the test changed the environment's thread counts (before, after): {changed}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips with a clear reason only when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (CI always has it)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def xvfb_display():
    """A private X display for programs a test starts itself (Xvfb picks a free number), e.g. ``":5"``."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    data = b""
    deadline = time.monotonic() + 20
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        if select.select([read_fd], [], [], 1)[0]:
            data += os.read(read_fd, 64)
    os.close(read_fd)
    assert data.strip(), "Xvfb did not start"
    yield f":{int(data.strip())}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def ij():
    """A real ImageJ 1.x in this process, under a private virtual display."""
    import ij_bridge

    ij_bridge.start(mode="virtual")
    import jpype

    return jpype.JClass("ij.IJ")


@pytest.fixture()
def clean_imagej(ij):
    """Close images, reset the ROI Manager and Results around a test."""
    import jpype

    WindowManager = jpype.JClass("ij.WindowManager")
    ij.run("Close All")
    yield ij
    ij.run("Close All")
    RoiManager = jpype.JClass("ij.plugin.frame.RoiManager")
    rm = RoiManager.getInstance()
    if rm is not None:
        rm.reset()
    ResultsTable = jpype.JClass("ij.measure.ResultsTable")
    ResultsTable.getResultsTable().reset()
    del WindowManager


@pytest.fixture()
def imagej(clean_imagej):
    """ImageJ with the bundled commands installed; no images, empty Results and Log before a test,
    no images and an empty ROI Manager after it (a module may define its own ``imagej``)."""
    from ij_bridge.commands import install_commands, run_macro

    install_commands()
    run_macro('close("*"); run("Clear Results"); print("\\\\Clear");')
    yield clean_imagej
    run_macro('close("*"); if (isOpen("ROI Manager")) { roiManager("reset"); }')


def show(data, title: str):
    """Show ``data`` (an array or DataArray) as the ImageJ image ``title``; return its ImagePlus."""
    from ij_bridge import to_imageplus

    imp = to_imageplus(data, title)
    imp.show()
    return imp


def image(title: str):
    """The open ImageJ image ``title`` (an assertion error if there is none)."""
    from ij_bridge.imagej._java import jc

    imp = jc.WindowManager.getImage(title)
    assert imp is not None, f"no image {title!r}"
    return imp


def write_stardist_training_set(folder: Path, n: int = 2) -> tuple[Path, Path]:
    """``n`` small synthetic 64 x 64 StarDist training pairs in ``folder/images`` and ``folder/masks``.

    Returns the two folders (float32 images, uint16 label masks, seeds 0 to n-1).
    """
    import numpy as np
    import tifffile

    from ij_bridge.synthetic import synthetic_nuclei

    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        x, y = synthetic_nuclei((64, 64), n_objects=6, radius=(5, 8), seed=i)
        tifffile.imwrite(images / f"s{i}.tif", x.astype(np.float32))
        tifffile.imwrite(masks / f"s{i}.tif", y.astype(np.uint16))
    return images, masks


def synthetic_set(seeds, shape: tuple[int, ...], n_objects: int, **kwargs) -> tuple[list, list]:
    """One :func:`ij_bridge.synthetic.synthetic_nuclei` image and label image per seed.

    ``kwargs`` go to ``synthetic_nuclei`` (``radius``, ``anisotropy`` ...). Returns ``(X, Y)``.
    """
    from ij_bridge.synthetic import synthetic_nuclei

    X, Y = [], []
    for s in seeds:
        x, y = synthetic_nuclei(shape, n_objects=n_objects, seed=s, **kwargs)
        X.append(x)
        Y.append(y)
    return X, Y


@pytest.fixture()
def two_torch_threads():
    """Torch uses 2 threads during the test (CI-sized trainings); the old count is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def run_python(code: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python (for a JVM in another mode than this process's)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)


def fill_generic_dialog(title: str, *, numbers: dict | None = None, strings: dict | None = None,
                        choices: dict | None = None, timeout: float = 30) -> None:
    """Wait for the open ``GenericDialog`` ``title``, fill its fields (by index) and press OK.

    For tests that drive a command through its dialog, as a user at the menu would.
    """
    import jpype

    Window = jpype.JClass("java.awt.Window")
    GenericDialog = jpype.JClass("ij.gui.GenericDialog")
    ActionEvent = jpype.JClass("java.awt.event.ActionEvent")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in Window.getWindows():
            if isinstance(w, GenericDialog) and w.isShowing() and str(w.getTitle()) == title:
                for i, text in (numbers or {}).items():
                    w.getNumericFields().get(i).setText(text)
                for i, text in (strings or {}).items():
                    w.getStringFields().get(i).setText(text)
                for i, item in (choices or {}).items():
                    w.getChoices().get(i).select(item)
                ok_button = w.getButtons()[0]
                w.actionPerformed(ActionEvent(ok_button, ActionEvent.ACTION_PERFORMED, "OK"))
                return
        time.sleep(0.05)
    raise AssertionError(f"dialog {title!r} did not open")


# --- IJ_BRIDGE_FORBID_JVM=1: prove that `-m "not imagej"` runs only the cores -------------
#
# With the variable set, a test that is not marked ``imagej`` fails when it starts a JVM,
# in this process (jpype.startJVM raises; a JVM found running afterwards is an error) or in
# a child Python (tests/_forbid_jvm/sitecustomize.py, put on PYTHONPATH, makes the child's
# startJVM raise and note the attempt in a log that is checked after the test).

_FORBID_DIR = Path(__file__).resolve().parent / "_forbid_jvm"
collect_ignore = ["_forbid_jvm"]  # --doctest-modules must not import its sitecustomize here


def _forbid_jvm() -> bool:
    return os.environ.get("IJ_BRIDGE_FORBID_JVM") == "1"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _forbid_jvm() or item.get_closest_marker("imagej") is not None:
        return
    import tempfile

    import jpype

    fd, log = tempfile.mkstemp(prefix="ij_bridge_forbid_jvm_", suffix=".log")
    os.close(fd)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "IJ_BRIDGE_FORBID_JVM_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_FORBID_DIR), saved["PYTHONPATH"]) if p)
    os.environ["IJ_BRIDGE_FORBID_JVM_LOG"] = log
    original = jpype.startJVM

    def forbidden(*args, **kwargs):
        raise RuntimeError(f"IJ_BRIDGE_FORBID_JVM=1: {item.nodeid} is not marked 'imagej' "
                           "but starts a JVM; mark it with @pytest.mark.imagej")

    jpype.startJVM = forbidden
    item._forbid_jvm_state = (saved, log, original, jpype.isJVMStarted())


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    result = yield
    state = getattr(item, "_forbid_jvm_state", None)
    if state is None:
        return result
    del item._forbid_jvm_state
    saved, log, original, was_started = state
    import jpype

    jpype.startJVM = original
    _restore_environ(saved)
    attempts = Path(log).read_text(encoding="utf-8")
    os.unlink(log)
    if attempts:
        pytest.fail(f"IJ_BRIDGE_FORBID_JVM=1: {item.nodeid} is not marked 'imagej' but a child "
                    f"process tried to start a JVM:\n{attempts}", pytrace=False)
    if jpype.isJVMStarted() and not was_started:
        pytest.fail(f"IJ_BRIDGE_FORBID_JVM=1: {item.nodeid} is not marked 'imagej' but a JVM "
                    "runs after it", pytrace=False)
    return result


def pytest_collection_modifyitems(config, items):
    """A test that uses the ImageJ fixtures must be marked ``imagej`` (so ``-m "not imagej"`` holds)."""
    unmarked = [item.nodeid for item in items
                if {"ij", "clean_imagej"} & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("imagej") is None]
    if unmarked:
        raise pytest.UsageError("these tests use the ij/clean_imagej fixtures but are not marked "
                                "@pytest.mark.imagej:\n  " + "\n  ".join(unmarked))


_SESSION_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _SESSION_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """With a JVM in this process, end it as the ``ij-bridge`` CLI does (``cli._leave``).

    After the whole suite (many ImageJ windows, AWT/Swing dialogs, numba's and
    torch's OpenMP threads in one process), the interpreter's shutdown once
    crashed with SIGSEGV *after* pytest had printed its summary (no hs_err
    file, so after the JVM's own handlers were gone), which turns a green run
    into a failed ``make test``. The report is complete here, so the process
    ends with pytest's own status; Xvfb dies with us (PR_SET_PDEATHSIG).
    """
    jpype = sys.modules.get("jpype")
    if not _SESSION_STATUS or jpype is None or not jpype.isJVMStarted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION_STATUS[-1])
