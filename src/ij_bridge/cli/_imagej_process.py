"""The end of a sub-command that ran ImageJ in this process (``ij-bridge imagej``, ``ij-bridge macro``)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

__all__ = ["exit_now"]


def exit_now(status: int, *, close_images: bool = True) -> NoReturn:
    """End the process with ``status`` without waiting for ImageJ's threads.

    Windows left open keep non-daemon Java threads alive (a stack window's
    slice selector, for one), and the JVM's shutdown would wait for them
    forever. Everything the command wrote is on disk by now, so: close the
    images (unless ``close_images`` is false), flush, and leave. The virtual
    display (Xvfb) goes with this process: the bridge starts it with a
    parent-death signal. Stopping it first would not do: Java's X11 toolkit
    ends the process with status 1 as soon as its display disappears.
    """
    if close_images:
        from ..imagej.windows import close_all_images

        try:
            close_all_images()
        except Exception:  # pragma: no cover - exiting anyway
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
