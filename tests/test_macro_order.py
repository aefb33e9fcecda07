"""Macro statements act on the image the previous statement made current, also under CPU load.

Issue 12, item 8: ``open(a); rename("first"); open(b); rename("second")`` was seen to rename
the previous image now and then under load. The pattern runs many times here while other
processes keep every CPU busy, in a fresh ``ij-bridge macro`` (a fresh ImageJ, whose first
windows are the slowest to activate).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

BURN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"

MACRO = """
n = parseInt(getArgument());
bad = 0;
for (i = 0; i < n; i++) {
  open("%(a)s"); rename("first" + i);
  if (i %% 3 == 0) print("iteration " + i);
  open("%(b)s"); rename("second" + i);
  t = getList("image.titles");
  if (t.length != 2 || t[0] != "first" + i || t[1] != "second" + i || getTitle() != "second" + i) {
    bad++; print("wrong in " + i + ": " + String.join(t) + " current " + getTitle());
  }
  close("*");
}
print("bad " + bad + " of " + n);
"""


@pytest.mark.imagej
def test_rename_after_open_names_the_opened_image_under_load(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, np.zeros((32, 32), np.uint8))
    tifffile.imwrite(b, np.full((48, 40), 7, np.uint8))
    macro = tmp_path / "order.ijm"
    macro.write_text(MACRO % {"a": a, "b": b})
    burners = [subprocess.Popen([sys.executable, "-c", BURN.format(seconds=120)])
               for _ in range(os.cpu_count() or 2)]
    try:
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        r = subprocess.run([sys.executable, "-m", "ij_bridge.cli", "macro", str(macro), "--arg", "40"],
                           capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "bad 0 of 40", [x for x in lines if x.startswith("wrong")]
    assert sorted(x.name for x in Path(tmp_path).iterdir()) == ["a.tif", "b.tif", "order.ijm"]
