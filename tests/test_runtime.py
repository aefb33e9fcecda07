"""The bridge runtime: modes, display handling, reuse of a JVM started elsewhere.

Each mode needs its own process (a JVM starts once per process), so most tests run
their code with ``run_python``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import run_python

pytestmark = pytest.mark.imagej


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _no_display_env() -> dict:
    """Environment without a display (run_python merges into os.environ, so blank it)."""
    env = dict(os.environ)
    env["DISPLAY"] = ""
    return env


def test_in_process_start_is_idempotent_and_mode_is_fixed(ij):
    import ij_bridge
    from ij_bridge.imagej import runtime

    info = ij_bridge.start()            # "auto" joins whatever runs
    assert info["started"] and info["mode"] == "virtual"
    assert info["imagej_version"] == "1.53t"
    assert ij_bridge.start(mode="virtual") == info
    with pytest.raises(RuntimeError, match="cannot change"):
        ij_bridge.start(mode="headless")
    assert runtime.is_started() and runtime.mode() == "virtual"
    runtime.require_display("the ROI Manager")   # no error under a virtual display


def test_headless_mode_refuses_display_work_with_the_fix_named():
    code = textwrap.dedent("""
        import ij_bridge
        from ij_bridge.imagej import runtime
        info = ij_bridge.start(mode="headless")
        assert info["mode"] == "headless" and info["xvfb_pid"] is None, info
        try:
            runtime.require_display("The ROI Manager")
        except runtime.HeadlessError as e:
            print("ERR", e)
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERR The ROI Manager needs a display" in proc.stdout
    assert "mode='virtual'" in proc.stdout


def test_virtual_mode_own_xvfb_stopped_at_exit_and_on_error():
    code = textwrap.dedent("""
        import os, ij_bridge
        info = ij_bridge.start(mode="virtual")
        print("PID", info["xvfb_pid"], "DISPLAY", info["display"], os.environ["DISPLAY"], flush=True)
        import jpype
        assert not jpype.JClass("java.awt.GraphicsEnvironment").isHeadless()
        raise SystemExit("boom") if os.environ.get("FAIL") else None
    """).replace('raise SystemExit("boom") if os.environ.get("FAIL") else None',
                 'exec("raise RuntimeError(\'boom\')") if os.environ.get("FAIL") else None')
    for fail in ("", "1"):
        env = _no_display_env()
        env["FAIL"] = fail
        proc = run_python(code, env=env)
        assert (proc.returncode != 0) == bool(fail), proc.stderr[-2000:]
        words = proc.stdout.split()
        pid, display = int(words[words.index("PID") + 1]), words[words.index("DISPLAY") + 1]
        assert display.startswith(":") and words[words.index("DISPLAY") + 2] == display
        assert _wait_gone(pid), f"Xvfb {pid} still running after the process ended (fail={fail!r})"


def test_virtual_mode_never_touches_an_existing_display(tmp_path):
    """With a display already running, the bridge starts its own on another number."""
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is installed on CI"
    r, w = os.pipe()
    theirs = subprocess.Popen([exe, "-displayfd", str(w), "-nolisten", "tcp"], pass_fds=(w,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        data = b""
        while not data.endswith(b"\n"):  # Xvfb writes the number and the newline apart
            chunk = os.read(r, 32)
            assert chunk, "Xvfb did not report its display"
            data += chunk
        os.close(r)
        their_display = ":" + data.decode().strip()
        code = textwrap.dedent("""
            import ij_bridge
            info = ij_bridge.start(mode="virtual")
            print("DISPLAY", info["display"])
        """)
        env = dict(os.environ)
        env["DISPLAY"] = their_display  # even with DISPLAY set, mode="virtual" makes its own
        proc = run_python(code, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        ours = proc.stdout.split()[-1]
        assert ours != their_display
        assert theirs.poll() is None, "the existing X server was stopped"
    finally:
        theirs.terminate()
        theirs.wait(5)


def test_xvfb_dies_with_a_killed_python():
    """Even SIGKILL of Python (no atexit) does not leave Xvfb behind."""
    code = textwrap.dedent("""
        import ij_bridge, time
        info = ij_bridge.start(mode="virtual")
        print("PID", info["xvfb_pid"], flush=True)
        time.sleep(60)
    """)
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=_no_display_env())
    try:
        line = proc.stdout.readline()
        pid = int(line.split()[1])
        assert _alive(pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert _wait_gone(pid), "Xvfb outlived a killed Python"


def test_auto_mode_without_display_is_virtual():
    code = "import ij_bridge; print('MODE', ij_bridge.start()['mode'])"
    proc = run_python(code, env=_no_display_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MODE virtual" in proc.stdout


def test_jvm_started_outside_the_bridge_is_reused():
    """A JVM with ij.jar started by someone else (as PyImageJ does) is used as it is."""
    code = textwrap.dedent("""
        import jpype, numpy as np
        jpype.startJVM("-Djava.awt.headless=true", classpath=["/usr/share/java/ij.jar"])
        import ij_bridge
        info = ij_bridge.start()
        assert info["source"] == "running JVM" and info["mode"] == "headless", info
        imp = ij_bridge.to_imageplus(np.arange(12, dtype=np.uint16).reshape(3, 4))
        assert np.array_equal(ij_bridge.from_imageplus(imp).values, np.arange(12).reshape(3, 4))
        info = ij_bridge.attach(object())   # a PyImageJ gateway stands in any object
        assert info["gateway"] is True
        print("OK", info["imagej_version"])
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK 1.53t" in proc.stdout


def test_jvm_without_imagej_and_missing_imagej_give_clear_errors(tmp_path):
    code = textwrap.dedent("""
        import jpype
        jpype.startJVM()
        import ij_bridge
        try:
            ij_bridge.start()
        except RuntimeError as e:
            print("ERR", e)
    """)
    proc = run_python(code)
    assert "ERR A JVM is already running in this process without ImageJ" in proc.stdout, proc.stderr[-2000:]
    code = textwrap.dedent("""
        import ij_bridge
        from ij_bridge.imagej.runtime import ImageJNotFoundError
        try:
            ij_bridge.start(mode="headless")
        except ImageJNotFoundError as e:
            print("ERR", e)
    """)
    env = {"IJ_BRIDGE_IMAGEJ": str(tmp_path / "nowhere")}
    proc = run_python(code, env=env)
    assert "does not exist" in proc.stdout and "apt-get install libij-java" in proc.stdout, \
        proc.stdout + proc.stderr[-2000:]


def test_max_heap_and_jvm_options_reach_the_jvm():
    code = textwrap.dedent("""
        import ij_bridge, jpype
        ij_bridge.start(mode="headless", max_heap="768m", jvm_options=["-Dij_bridge.test=yes"])
        System = jpype.JClass("java.lang.System")
        print("HEAP", jpype.JClass("java.lang.Runtime").getRuntime().maxMemory() // 2**20,
              "PROP", System.getProperty("ij_bridge.test"))
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert 600 <= int(words[words.index("HEAP") + 1]) <= 768   # -Xmx768m (minus a survivor space)
    assert words[words.index("PROP") + 1] == "yes"
    bad = run_python("import ij_bridge; ij_bridge.start(mode='headless', max_heap='4gb')")
    assert bad.returncode != 0 and "max_heap must look like" in bad.stderr


def test_python_exits_with_a_stack_window_open_and_imagej_threads_alive():
    # a StackWindow and ImageJ's filter thread pool own non-daemon threads; the bridge
    # releases both at exit
    proc = run_python(
        "import numpy as np, ij_bridge\n"
        "ij_bridge.start(mode='virtual')\n"
        "imp = ij_bridge.to_imageplus(np.zeros((5, 32, 32), np.uint8), dims='zyx')\n"
        "imp.show()\n"
        "import jpype; jpype.JClass('ij.IJ').run(imp, 'Gaussian Blur...', 'sigma=2 stack')\n"
        "print('shown')\n",
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shown" in proc.stdout
