"""Make the reference fixtures of the original packages (tests/fixtures/reference/<family>/).

Runs every ``scripts/reference_models/make_*.py`` in turn. Each one builds its own
throwaway virtual environment under ``/work/venvs/`` (the original packages pin
old TensorFlow/numpy versions that cannot share ij-bridge's environment), trains
small models on synthetic data there, and writes the models, their TF exports
and their own predictions into ``tests/fixtures/reference/<family>/``. The tests
read those files and never need TensorFlow.

Usage::

    python3 scripts/make_reference_models.py            # all families
    python3 scripts/make_reference_models.py stardist   # only make_stardist.py

Extra arguments after ``--`` go to every script (e.g. ``-- --steps 200``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "reference_models"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    scripts = sorted(HERE.glob("make_*.py"))
    if argv:
        wanted = {f"make_{a}.py" for a in argv}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            print(f"no such script(s): {', '.join(sorted(unknown))}; have "
                  f"{', '.join(s.name for s in scripts)}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.name in wanted]
    failed = []
    for script in scripts:
        t0 = time.perf_counter()
        print(f"== {script.name}", flush=True)
        rc = subprocess.run([sys.executable, str(script), *extra]).returncode
        print(f"== {script.name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
