"""Cancellation: time limits, SIGINT/SIGTERM and Esc reach running work, which stops within a
step and saves nothing; exit codes 124/130/143; batch workers past their limit are killed.

Everything is real: real signals (``os.kill`` on a subprocess), real time limits, real
ImageJ under its own virtual display, real training.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import write_stardist_training_set

from ij_bridge import cancel

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))

# a training of many small steps: minutes unless something stops it
LONG_N2V = ('newImage("noisy", "32-bit noise", 64, 64, 1);\n'
            'print("start");\n'
            'run("N2V Train (torch)", "training=noisy model=[{model}] epochs=1000 steps=10 batch=2 patch=32");\n'
            'print("after");\n')


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # as on a server


# ============================================================================ the core, no Java
def test_check_does_nothing_without_a_scope_and_raises_once_cancelled():
    cancel.check()  # no scope: free
    with cancel.cancel_scope() as scope:
        cancel.check()
        assert scope.reason is None and scope.remaining() is None
        assert cancel.request_cancel("interrupted") is True
        with pytest.raises(cancel.Cancelled) as info:
            cancel.check()
        assert info.value.reason == "interrupted" and "interrupted" in str(info.value)
        assert scope.event.is_set()
        scope.cancel("terminated")  # the first reason wins
        assert scope.reason == "interrupted"
    cancel.check()  # the scope is gone
    assert cancel.request_cancel() is False


def test_a_time_limit_raises_after_its_deadline_only():
    with cancel.cancel_scope(timeout=0.3) as scope:
        cancel.check()
        t0 = time.monotonic()
        with pytest.raises(cancel.TimeLimitExceeded) as info:
            while True:
                cancel.check()
                time.sleep(0.01)
        assert 0.2 < time.monotonic() - t0 < 0.6
        assert info.value.reason == cancel.TIME_LIMIT and "0.3 s" in str(info.value)
        assert scope.reason == cancel.TIME_LIMIT
    with pytest.raises(ValueError):
        with cancel.cancel_scope(timeout=0):
            pass


def test_nested_scopes_and_a_cancel_from_another_thread():
    with cancel.cancel_scope(timeout=60) as outer:
        with cancel.cancel_scope() as inner:
            threading.Timer(0.1, cancel.request_cancel, args=("Esc",)).start()
            with pytest.raises(cancel.Cancelled) as info:
                for _ in range(500):
                    cancel.check()
                    time.sleep(0.01)
            assert info.value.reason == "Esc" and inner.reason == outer.reason == "Esc"


def test_registered_checks_cancel_the_work():
    pressed = {"esc": False}

    def esc() -> str | None:
        return cancel.ESCAPE if pressed["esc"] else None

    with cancel.cancel_scope(checks=[esc]) as scope:
        cancel.check()
        pressed["esc"] = True
        with pytest.raises(cancel.Cancelled):
            cancel.check()
        assert scope.reason == "Esc"
    cancel.add_check(lambda: None)
    try:
        cancel.check()
    finally:
        cancel._global_checks.clear()


def test_exit_statuses():
    assert [cancel.exit_status(r) for r in ("time limit", "interrupted", "terminated", "Esc", None)] == \
        [124, 130, 143, 1, 1]


def test_n2v_training_stops_within_a_step_at_its_time_limit():
    from ij_bridge.n2v import N2V, N2VConfig

    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (64, 64)).astype(np.float32)
    cfg = N2VConfig(axes="YX", patch_size=(16, 16), batch_size=2, epochs=1000, steps_per_epoch=10)
    model = N2V(cfg)
    steps: list[float] = []
    with cancel.cancel_scope() as scope:
        def progress(done, total, message):
            steps.append(time.monotonic())
            if done == 1:  # the limit counts from the first step (torch warms up before it)
                scope.timeout, scope.deadline = 1.0, time.monotonic() + 1.0

        with pytest.raises(cancel.TimeLimitExceeded):
            model.train(img, progress=progress, show_progress=False)
        deadline = scope.deadline
    assert len(steps) > 1
    assert steps[-1] < deadline + 5  # it did stop
    # at most the step that was running when the limit passed finished after it
    assert sum(t > deadline for t in steps) <= 1, (steps, deadline)
    assert model.history is None  # train() returned nothing: a cancelled model is not "trained"


def test_stardist_training_stops_at_the_next_step(tmp_path):
    from ij_bridge.stardist import StarDist2D, StarDistConfig
    from ij_bridge.synthetic import synthetic_nuclei

    x, y = synthetic_nuclei((64, 64), n_objects=6, radius=(5, 8), seed=1)
    cfg = StarDistConfig(n_rays=8, patch_size=(32, 32), batch_size=2, epochs=1000, steps_per_epoch=10, seed=1)
    model = StarDist2D(cfg, device="cpu")
    steps = []

    def progress(done, total, message):
        steps.append(done)
        if done == 3:
            cancel.request_cancel("interrupted")  # as a signal handler would

    with cancel.cancel_scope():
        with pytest.raises(cancel.Cancelled) as info:
            model.train([x], [y], show_progress=False, checkpoint=tmp_path / "ckpt", progress=progress)
    assert info.value.reason == "interrupted"
    assert steps == [1, 2, 3]  # the 4th step never ran
    assert list(tmp_path.iterdir()) == []  # no epoch ended: no checkpoint, nothing half-written


SIGNAL_CHILD = """
import sys, time
from ij_bridge import cancel
cancel.install_signal_handlers()
try:
    with cancel.cancel_scope():
        print("ready", flush=True)
        while True:
            cancel.check()
            time.sleep(0.01)
except cancel.Cancelled as exc:
    print("stopped:", exc.reason, flush=True)
    sys.exit(cancel.exit_status(exc.reason))
"""


@pytest.mark.parametrize("sig, status, reason", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "terminated")])
def test_signals_cancel_the_active_scope(sig, status, reason):
    p = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "ready"
    os.kill(p.pid, sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == status, err
    assert out.strip() == f"stopped: {reason}"
    assert "stopping after the current step" in err


# ============================================================================ ij-bridge macro
def _start_macro(macro: Path, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ij_bridge.cli", "macro", str(macro), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=_env())


def _wait_for(proc: subprocess.Popen, text: str, limit: float = 120) -> list[str]:
    lines = []
    deadline = time.monotonic() + limit
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
        assert time.monotonic() < deadline, lines
    raise AssertionError(f"{text!r} never came; stdout {lines}, stderr {proc.stderr.read()}")


@pytest.mark.imagej
def test_macro_timeout_stops_a_training_within_a_step_and_saves_nothing(tmp_path):
    model = tmp_path / "model.zip"
    macro = tmp_path / "train.ijm"
    macro.write_text(LONG_N2V.format(model=model))
    t0 = time.monotonic()
    p = _start_macro(macro, "--timeout", "12", cwd=tmp_path)
    _wait_for(p, "training N2V")
    t_train = time.monotonic()
    out, err = p.communicate(timeout=120)
    t_end = time.monotonic()
    assert p.returncode == 124, err
    assert t_end - t0 < 12 + 60  # start-up, the limit, one step and the exit; not the 10 000 steps
    assert t_end - t_train < 12 + 10
    assert "after" not in out
    assert not model.exists() and list(tmp_path.iterdir()) == [macro]  # no model, no hs_err, nothing
    last = err.strip().splitlines()[-1]
    assert last == "ij-bridge: macro train.ijm stopped: the macro ran past its time limit of 12 s", err
    assert "'}' expected" not in err and "Traceback" not in err


@pytest.mark.imagej
@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted (SIGINT"),
                                               (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_macro_signals_stop_a_training_cleanly(tmp_path, sig, status, word):
    model = tmp_path / "model.zip"
    macro = tmp_path / "train.ijm"
    macro.write_text(LONG_N2V.format(model=model))
    p = _start_macro(macro, cwd=tmp_path)
    _wait_for(p, "training N2V")
    time.sleep(1.0)
    t0 = time.monotonic()
    os.kill(p.pid, sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == status, err
    assert time.monotonic() - t0 < 15
    assert word in err and "'}' expected" not in err
    assert not model.exists()
    # the JVM did not abort: no crash report here (nor anything else)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["train.ijm"]


@pytest.mark.imagej
def test_macro_ctrl_c_in_a_java_loop_and_a_timeout_in_a_block(tmp_path):
    """SIGINT while the interpreter is busy in Java; a time limit inside a loop's block."""
    macro = tmp_path / "loop.ijm"
    macro.write_text('print("looping");\nfor (i = 0; i < 1e12; i++) { x = i * 2; }\nprint("after");\n')
    p = _start_macro(macro, cwd=tmp_path)
    _wait_for(p, "looping")
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert time.monotonic() - t0 < 10
    # a time limit ends the same loop at a statement, with one clear line
    p = _start_macro(macro, "--timeout", "3", cwd=tmp_path)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 124, err
    assert err.strip().splitlines() == ["ij-bridge: macro loop.ijm stopped: the macro ran past its time "
                                        "limit of 3 s"]


@pytest.mark.imagej
def test_exit_with_a_message_is_a_failure_unless_exit_ok(tmp_path):
    macro = tmp_path / "exit.ijm"
    macro.write_text('print("a");\nif (getArgument() != "plain") exit("ERROR: no nuclei found");\n'
                     'exit;\nprint("never");\n')
    p = _start_macro(macro, cwd=tmp_path)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 1 and out == "a\n"
    assert 'failed: the macro ended with exit("ERROR: no nuclei found")' in err
    p = _start_macro(macro, "--exit-ok", cwd=tmp_path)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err
    assert "ERROR: no nuclei found" in err  # still shown, as a message
    p = _start_macro(macro, "--arg", "plain", cwd=tmp_path)  # exit without a message: a normal end
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0 and out == "a\n", err


def test_macro_given_a_folder_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ij_bridge.cli", "macro", str(tmp_path)], capture_output=True,
                       text=True, timeout=60, env=_env())
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ij-bridge: error: {str(tmp_path)!r} is a folder, not a macro file: give the .ijm file to run "
        f"(to run a macro on every file of a folder use `ij-bridge batch MACRO --input {str(tmp_path)!r} "
        "--output OUT`)"]


# ============================================================================ ij-bridge batch
def _images(folder: Path, names: list[str], shape=(48, 48)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img = np.random.default_rng(i).normal(100, 10, shape).clip(0, 255).astype(np.uint8)
        tifffile.imwrite(folder / name, img)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def _alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in ps.split()]


@pytest.mark.imagej
def test_batch_timeout_stops_or_kills_and_the_batch_answers(tmp_path):
    inp = tmp_path / "in"
    _images(inp, ["a.tif", "b.tif", "c.tif", "d.tif"])
    macro = tmp_path / "m.ijm"
    model = tmp_path / "model.zip"
    # b trains (stopped inside the worker at its limit); c spins in an empty loop, which no
    # statement boundary interrupts (its worker is killed and replaced); a and d are quick
    macro.write_text(
        'if (getTitle() == "b.tif") run("N2V Train (torch)", "training=b.tif model=[' + str(model)
        + '] epochs=1000 steps=10 batch=2 patch=32");\n'
        'if (getTitle() == "c.tif") for (i = 0; i < 1e13; i++);\n'
        'run("Invert");\n')
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--timeout", "30",
                        "--quiet"], capture_output=True, text=True, timeout=400, cwd=tmp_path,
                       env={**_env(), "IJ_BRIDGE_BATCH_GRACE": "5"})
    assert time.monotonic() - t0 < 300
    assert r.returncode == 1, r.stderr
    assert "2 of 4 files OK, 2 failed" in r.stdout
    rows = _rows(out)
    assert rows["a.tif"]["status"] == rows["d.tif"]["status"] == "ok"
    assert rows["b.tif"]["status"] == "failed"
    assert rows["b.tif"]["error"].startswith("time limit: the macro ran past --timeout 30 s and was stopped")
    assert rows["c.tif"]["status"] == "failed"
    assert rows["c.tif"]["error"].startswith("time limit: the file ran past --timeout 30 s")
    assert "was killed and replaced" in rows["c.tif"]["error"]
    assert rows["d.tif"]["worker"] != rows["b.tif"]["worker"]  # a fresh worker did d
    assert not model.exists()
    assert not (out / "b" / "b.tif").exists() and not (out / "c").exists()
    killed = int(re.search(r"the worker \(pid (\d+)\) was killed", rows["c.tif"]["error"]).group(1))
    assert not _alive(killed)
    assert not list(tmp_path.glob("hs_err*"))


@pytest.mark.imagej
def test_batch_exit_message_fails_and_a_changed_input_stops_the_batch(tmp_path):
    inp = tmp_path / "in"
    _images(inp, ["a.tif", "b.tif", "c.tif", "d.tif"])
    macro = tmp_path / "m.ijm"
    macro.write_text(
        'if (getTitle() == "a.tif") exit("ERROR: nothing to measure");\n'
        'if (getTitle() == "c.tif") { run("Invert"); saveAs("Tiff", getDirectory("image") + "c.tif"); }\n'
        'run("Invert");\n')
    out = tmp_path / "out"
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env())
    assert r.returncode == 1, r.stderr
    rows = _rows(out)
    assert rows["a.tif"]["status"] == "failed"
    assert 'exit("ERROR: nothing to measure")' in rows["a.tif"]["error"]
    assert rows["b.tif"]["status"] == "ok"
    assert rows["c.tif"]["status"] == "failed" and "changed or removed its input" in rows["c.tif"]["error"]
    assert "The batch stopped here" in rows["c.tif"]["error"]
    assert rows["d.tif"]["status"] == "failed"
    assert rows["d.tif"]["error"] == "not run: the batch stopped at c.tif, whose input the macro changed"
    assert not (out / "d").exists()
    # --exit-ok: exit("...") is a normal end
    macro.write_text('if (getTitle() == "a.tif") exit("done early");\nrun("Invert");\n')
    out2 = tmp_path / "out2"
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out2), "--exit-ok",
                        "--quiet"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env())
    assert r.returncode == 0, r.stderr
    rows = _rows(out2)
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["a.tif"]["messages"] == "done early"


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (a disk that fills up), unmounted afterwards."""
    d = tmp_path / "disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=True, capture_output=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False, capture_output=True)


@pytest.mark.imagej
def test_batch_on_a_full_disk_fails_the_file_and_goes_on(tmp_path, small_tmpfs):
    inp = tmp_path / "in"
    _images(inp, ["a.tif", "big.tif", "c.tif"])
    macro = tmp_path / "m.ijm"
    # big.tif leaves a 4 MB image open: ImageJ's TIFF writer hits the full disk while saving it
    macro.write_text('if (getTitle() == "big.tif") newImage("huge", "32-bit ramp", 1024, 1024, 1);\n'
                     'run("Invert");\n')
    out = small_tmpfs / "out"
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env())
    assert r.returncode == 1, r.stderr
    rows = _rows(out)
    assert rows["a.tif"]["status"] == rows["c.tif"]["status"] == "ok"
    assert rows["big.tif"]["status"] == "failed"
    error = rows["big.tif"]["error"]
    assert "could not save the image 'huge'" in error and "No space left on device" in error, error
    assert (out / "c" / "c.tif").exists()
    assert not (out / "big").exists() or not (out / "big" / "huge.tif").exists()


@pytest.mark.imagej
def test_batch_ctrl_c_ends_the_workers_and_keeps_what_is_done(tmp_path):
    inp = tmp_path / "in"
    _images(inp, ["a.tif", "b.tif", "c.tif"])
    macro = tmp_path / "slow.ijm"
    macro.write_text('wait(3000);\nrun("Invert");\n')
    out = tmp_path / "out"
    p = subprocess.Popen([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(),
                         start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "a" / ".ij-bridge.json").exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.1)
    workers = _children(p.pid)
    assert workers  # the worker process doing b
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)  # as the terminal's Ctrl-C does: the whole process group
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert time.monotonic() - t0 < 10
    rows = _rows(out)
    assert rows["a.tif"]["status"] == "ok" and rows["c.tif"]["status"] == "pending"
    time.sleep(0.5)
    assert not any(_alive(w) for w in workers)  # no worker left behind


def test_cli_training_stops_at_ctrl_c_and_saves_no_model(tmp_path):
    img = tmp_path / "noisy.tif"
    tifffile.imwrite(img, np.random.default_rng(0).normal(100, 10, (48, 48)).astype(np.float32))
    model = tmp_path / "model.zip"
    p = subprocess.Popen([CLI, "n2v", "train", str(img), "--model", str(model), "--epochs", "1000",
                          "--steps", "10", "--batch-size", "2", "--patch-size", "16"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env())
    time.sleep(15)  # start-up and training (a signal during start-up stops it at its first step too)
    assert p.poll() is None, p.communicate()
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert time.monotonic() - t0 < 10
    assert "stopped (interrupted)" in err and "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["noisy.tif"]


# ============================================================================ Esc in ImageJ
def _press_escape_on(imp) -> None:
    """A real Esc key press on the image's window, through AWT's event queue (as a user's)."""
    import jpype

    KeyEvent = jpype.JClass("java.awt.event.KeyEvent")
    Toolkit = jpype.JClass("java.awt.Toolkit")
    System = jpype.JClass("java.lang.System")
    canvas = imp.getCanvas()
    queue = Toolkit.getDefaultToolkit().getSystemEventQueue()
    for kind in (KeyEvent.KEY_PRESSED, KeyEvent.KEY_RELEASED):
        queue.postEvent(KeyEvent(canvas, kind, System.currentTimeMillis(), 0, KeyEvent.VK_ESCAPE,
                                 KeyEvent.CHAR_UNDEFINED))


@pytest.mark.imagej
@pytest.mark.parametrize("how, name", [("menu", "N2V Train (torch)"), ("macro", "N2V Train (torch)"),
                                       ("menu", "StarDist Train (torch)")])
def test_esc_stops_a_training_within_a_step_and_saves_nothing(clean_imagej, tmp_path, monkeypatch,
                                                             how, name):
    """Esc on an image window (ImageJ's own key handling sets IJ.escapePressed()) stops the
    N2V Train / StarDist Train command at its next step; no model file, no temporary file is left."""
    import jpype

    from ij_bridge.commands import install_commands, registry, run_macro
    from ij_bridge.imagej.images import to_imageplus

    install_commands()
    IJ = jpype.JClass("ij.IJ")
    assert IJ.getInstance() is not None  # ImageJ's key handler, which image windows feed
    steps: list[tuple[int, float]] = []
    original = registry.CommandContext.progress

    def progress(self, done, total, message=""):
        steps.append((done, time.monotonic()))
        original(self, done, total, message)

    monkeypatch.setattr(registry.CommandContext, "progress", progress)
    rng = np.random.default_rng(0)
    imp = to_imageplus(rng.normal(0, 1, (64, 64)).astype(np.float32), "noisy")
    imp.show()
    out = tmp_path / "models"
    out.mkdir()
    model = out / "esc.zip"
    options = f"training=noisy model=[{model}] epochs=1 steps=5000 batch=2 patch=16"
    if name.startswith("StarDist"):
        images, masks = write_stardist_training_set(tmp_path)
        model = out / "esc"
        options = (f"images=[{images}] masks=[{masks}] model=[{model}] "
                   "epochs=1 steps=5000 patch=32 rays=8")
    result: dict = {}

    def work():
        if how == "macro":
            result["macro"] = run_macro(f'run("{name}", "{options}");\nprint("after");')
        else:  # as from the menu or a plugin: IJ.run on its own thread
            try:
                IJ.run(imp, name, options)
            except jpype.JException as exc:
                result["java"] = str(exc.getMessage())

    before = registry.last_error.when
    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 120
    while len(steps) < 3:  # training runs
        assert time.monotonic() < deadline and t.is_alive(), (steps, result)
        time.sleep(0.02)
    t_esc = time.monotonic()
    _press_escape_on(imp)
    t.join(60)
    t_end = time.monotonic()
    assert not t.is_alive()
    # at most the step that was running when Esc came finished after it (and the event's delivery)
    after = [d for d, ts in steps if ts > t_esc]
    assert len(after) <= 2, (after, len(steps))
    assert steps[-1][0] < 5000
    assert registry.last_error.when > before and registry.last_error.command == name
    assert registry.last_error.message == "cancelled (Esc)"
    if how == "macro":
        r = result["macro"]
        assert not r.ok and r.cancelled == "Esc" and r.error == "stopped: Esc was pressed", r
        assert "after" not in r.output
    assert list(out.iterdir()) == []  # no model, no temporary sibling
    print(f"{len(steps)} steps, the last {steps[-1][1] - t_esc:.2f} s after Esc; the run ended "
          f"{t_end - t_esc:.2f} s after Esc")


@pytest.mark.imagej
def test_esc_stops_a_macro_under_a_virtual_display(clean_imagej):
    """Esc on an image window stops a running macro as a cancellation (as in the ImageJ GUI)."""
    import jpype

    from ij_bridge.commands import run_macro

    WindowManager = jpype.JClass("ij.WindowManager")
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(r=run_macro(
        'newImage("looping", "8-bit black", 32, 32, 1);\nprint("looping");\n'
        'while (true) wait(20);\nprint("after");', timeout=120)))
    t.start()
    deadline = time.monotonic() + 60
    while WindowManager.getImage("looping") is None or WindowManager.getImage("looping").getCanvas() is None:
        assert time.monotonic() < deadline and t.is_alive(), result
        time.sleep(0.05)
    time.sleep(0.3)
    t_esc = time.monotonic()
    _press_escape_on(WindowManager.getImage("looping"))
    t.join(30)
    assert not t.is_alive() and time.monotonic() - t_esc < 10
    r = result["r"]
    assert not r.ok and r.cancelled == "Esc" and r.error == "stopped: Esc was pressed", r
    assert "looping" in r.output and "after" not in r.output
