"""``ij-bridge macro``: a real process per test, ImageJ under its own virtual display."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.imagej

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from ij_bridge.cli import main; sys.exit(main(sys.argv[1:]))"


def ij_bridge(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # as on a server
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=full_env)


def test_print_goes_to_stdout_and_argument_arrives(tmp_path):
    macro = tmp_path / "hello.ijm"
    macro.write_text(
        'print("argument: " + getArgument());\n'
        'newImage("ramp", "32-bit ramp", 64, 32, 1);\n'
        'print("size " + getWidth() + "x" + getHeight());\n'
        'print("mean " + getValue("Mean"));\n'
    )
    r = ij_bridge("macro", str(macro), "--arg", "a b c")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["argument: a b c", "size 64x32", "mean 0.4922"]


def test_failing_macro_exits_non_zero_quickly(tmp_path):
    macro = tmp_path / "bad.ijm"
    macro.write_text('print("one");\nnewImage("x", "8-bit", 8, 8, 1);\nrun("Gaussian Blur...", "sigma=oops");\n'
                     'print("never");\n')
    t0 = time.perf_counter()
    r = ij_bridge("macro", str(macro), timeout=60)
    assert time.perf_counter() - t0 < 30
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "one" and "never" not in r.stdout
    assert "bad.ijm failed" in r.stderr and "Numeric value expected" in r.stderr


def test_missing_macro_file_is_a_usage_error(tmp_path):
    r = ij_bridge("macro", str(tmp_path / "nope.ijm"), timeout=60)
    assert r.returncode == 2
    assert "does not exist" in r.stderr


def test_failing_command_exits_non_zero_with_its_message(tmp_path):
    macro = tmp_path / "bad_model.ijm"
    macro.write_text('newImage("x", "16-bit ramp", 64, 64, 1);\n'
                     'run("StarDist 2D (torch)", "model=[/no/such/model] normalize");\n'
                     'print("never");\n')
    r = ij_bridge("macro", str(macro), timeout=120)
    assert r.returncode == 1
    assert "never" not in r.stdout
    assert "StarDist 2D (torch): StarDist model not found: /no/such/model" in r.stderr
    assert "(macro line 2)" in r.stderr
