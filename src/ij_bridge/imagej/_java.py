"""One place to reach Java classes: looked up once the JVM runs, then cached.

Use the shared accessor :data:`jc` instead of ``jpype.JClass("...")``::

    from ij_bridge.imagej._java import jc

    jc.IJ.log("hello")                      # ij.IJ
    rm = jc.RoiManager.getInstance()        # ij.plugin.frame.RoiManager
    jc("ij.plugin.Duplicator")              # any class by its full name

A short name (``jc.IJ``) must be one of :data:`CLASSES`, so that a typo is an
``AttributeError`` naming the known names rather than a lookup in the JVM;
other classes are reached by full name with ``jc("package.Class")``. Both
forms are resolved on first use and cached for the life of the process (a JVM
starts once per process). Importing this module starts no JVM, and asking for
a class before the JVM runs raises :class:`JVMNotStartedError` saying how to
start ImageJ; this module never starts it itself (code that may start ImageJ
on demand calls ``runtime._ensure_started()`` first).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["jc", "JavaClasses", "JVMNotStartedError", "CLASSES"]

#: Short name -> fully qualified Java class name.
CLASSES: dict[str, str] = {
    # ImageJ: application, windows, macros, commands
    "IJ": "ij.IJ",
    "ImageJ": "ij.ImageJ",
    "WindowManager": "ij.WindowManager",
    "Menus": "ij.Menus",
    "Executer": "ij.Executer",
    "Macro": "ij.Macro",
    "Interpreter": "ij.macro.Interpreter",
    "Recorder": "ij.plugin.frame.Recorder",
    "ThreadUtil": "ij.util.ThreadUtil",
    # ImageJ: images
    "ImagePlus": "ij.ImagePlus",
    "ImageStack": "ij.ImageStack",
    "CompositeImage": "ij.CompositeImage",
    "Calibration": "ij.measure.Calibration",
    "ImageProcessor": "ij.process.ImageProcessor",
    "ByteProcessor": "ij.process.ByteProcessor",
    "FileSaver": "ij.io.FileSaver",
    "Opener": "ij.io.Opener",
    # ImageJ: ROIs and tables
    "Roi": "ij.gui.Roi",
    "Overlay": "ij.gui.Overlay",
    "RoiManager": "ij.plugin.frame.RoiManager",
    "RoiEncoder": "ij.io.RoiEncoder",
    "RoiDecoder": "ij.io.RoiDecoder",
    "ThresholdToSelection": "ij.plugin.filter.ThresholdToSelection",
    "ResultsTable": "ij.measure.ResultsTable",
    "TextWindow": "ij.text.TextWindow",
    # ImageJ: dialogs
    "GenericDialog": "ij.gui.GenericDialog",
    "MessageDialog": "ij.gui.MessageDialog",
    "MultiLineLabel": "ij.gui.MultiLineLabel",
    # the JDK
    "System": "java.lang.System",
    "Thread": "java.lang.Thread",
    "Double": "java.lang.Double",
    "RuntimeException": "java.lang.RuntimeException",
    "ByteOrder": "java.nio.ByteOrder",
    "GraphicsEnvironment": "java.awt.GraphicsEnvironment",
    "Window": "java.awt.Window",
    "Dialog": "java.awt.Dialog",
    "Frame": "java.awt.Frame",
    "Label": "java.awt.Label",
    "Container": "java.awt.Container",
    "TextComponent": "java.awt.TextComponent",
    "WindowEvent": "java.awt.event.WindowEvent",
}


class JVMNotStartedError(RuntimeError):
    """A Java class was asked for before the JVM runs."""


class JavaClasses:
    """Lazily resolved, cached Java classes: ``jc.IJ`` or ``jc("ij.IJ")``.

    Parameters
    ----------
    names : dict of str to str, optional
        Short name -> full class name (default :data:`CLASSES`).
    """

    def __init__(self, names: dict[str, str] | None = None) -> None:
        object.__setattr__(self, "_names", dict(CLASSES if names is None else names))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_lock", threading.Lock())

    def __call__(self, full_name: str) -> Any:
        """The Java class ``full_name`` (e.g. ``"ij.plugin.Duplicator"``), cached.

        Raises
        ------
        JVMNotStartedError
            When no JVM runs in this process yet.
        TypeError
            JPype's error when the JVM has no such class.
        """
        cls = self._cache.get(full_name)
        if cls is not None:
            return cls
        import jpype

        if not jpype.isJVMStarted():
            raise JVMNotStartedError(
                f"the Java class {full_name} is needed, but no JVM runs yet: start ImageJ first "
                "with ij_bridge.start() (or join PyImageJ's with ij_bridge.attach(gateway))")
        cls = jpype.JClass(full_name)
        with self._lock:
            self._cache[full_name] = cls
        return cls

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        full = self._names.get(name)
        if full is None:
            raise AttributeError(
                f"no Java class {name!r} in ij_bridge.imagej._java.CLASSES; use jc('package.{name}') "
                f"for another class, or add it there (known: {', '.join(sorted(self._names))})")
        return self(full)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("JavaClasses is read-only; add short names to CLASSES")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._names))

    def __repr__(self) -> str:
        return f"<JavaClasses: {len(self._names)} short names, {len(self._cache)} resolved>"


#: The shared accessor.
jc = JavaClasses()
