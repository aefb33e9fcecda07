"""The progress-callback type shared by every long-running function.

A progress callback is called as ``progress(done, total, message)``:
``done`` of ``total`` units of work are finished, and ``message`` says what
is being done (for a status bar). It should return quickly; cancellation
goes through :mod:`ij_bridge.cancel`, not through the callback.

>>> from ij_bridge.progress import Progress
>>> seen = []
>>> cb: Progress = lambda done, total, message: seen.append((done, total, message))
>>> cb(1, 4, "predicting")
>>> seen
[(1, 4, 'predicting')]
"""

from __future__ import annotations

from typing import Callable

__all__ = ["Progress"]

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``."""
