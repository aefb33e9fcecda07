"""Loaded by every Python that tests start while ``IJ_BRIDGE_FORBID_JVM=1``.

The conftest puts this folder on ``PYTHONPATH`` for tests that are not marked
``imagej``. Starting a JVM in such a child then fails, and the child notes the
attempt in ``$IJ_BRIDGE_FORBID_JVM_LOG`` so that the test fails even if it
expected the child to fail for some other reason. ``jpype`` is patched when
something imports it, so a child that never imports Java still does not.
"""

import importlib.abc
import importlib.machinery
import os
import sys


def _forbidden_start_jvm(*args, **kwargs):
    log = os.environ.get("IJ_BRIDGE_FORBID_JVM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
    raise RuntimeError(
        "IJ_BRIDGE_FORBID_JVM=1: this test is not marked 'imagej' but started a JVM; "
        "mark it with @pytest.mark.imagej"
    )


class _PatchJpypeOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "jpype":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched_exec_module(module):
            exec_module(module)
            module.startJVM = _forbidden_start_jvm

        spec.loader.exec_module = patched_exec_module
        return spec


if os.environ.get("IJ_BRIDGE_FORBID_JVM") == "1":
    sys.meta_path.insert(0, _PatchJpypeOnImport())
