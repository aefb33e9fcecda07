"""Training batches drawn one step ahead, in a background thread (no Java).

A training step has two parts that need not wait for each other: drawing the
next batch (patch cuts, augmentation, per-patch targets: numpy and numba code
that releases the GIL for most of its time) and the network's forward and
backward pass (torch, which releases the GIL in its kernels). :class:`Prefetch`
runs the drawing in one thread beside the loop, as a Keras ``Sequence``
enqueuer does for the original StarDist.

The batches are the same, in the same order, as drawn inline: one thread
draws them all from the same random generator, and nothing else uses that
generator while the loop runs. So results do not change.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> with Prefetch(lambda: rng.integers(100), 3) as batches:
...     [int(batches.next()) for _ in range(3)]
[85, 63, 51]
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

__all__ = ["Prefetch"]


class Prefetch:
    """Call ``draw`` ``n`` times in a background thread, up to ``depth`` results ahead of :meth:`next`.

    Parameters
    ----------
    draw : callable
        Makes one batch; called from the background thread only.
    n : int
        How many batches the loop will take.
    depth : int
        Batches held ready (memory: ``depth + 1`` batches at most, with the one being drawn).

    Notes
    -----
    An exception raised by ``draw`` is raised again by the :meth:`next` call
    that would have returned that batch. :meth:`close` (or leaving the
    ``with`` block, also by an exception such as a cancelled run) stops the
    thread after the batch it is drawing.
    """

    def __init__(self, draw: Callable[[], Any], n: int, depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._left = int(n)
        self._thread = threading.Thread(target=self._run, args=(draw, int(n)), daemon=True,
                                        name="ij-bridge training batches")
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, draw: Callable[[], Any], n: int) -> None:
        for _ in range(n):
            if self._stop.is_set():
                return
            try:
                item = (True, draw())
            except BaseException as exc:  # handed to the loop's thread, raised there
                self._put((False, exc))
                return
            if not self._put(item):
                return

    def next(self) -> Any:
        """The next batch (waits for it); raises what ``draw`` raised for it."""
        if self._left <= 0:
            raise StopIteration("all batches were taken")
        ok, value = self._q.get()
        self._left -= 1
        if not ok:
            self.close()
            raise value
        return value

    def close(self) -> None:
        """Stop the background thread and wait for it (at most the batch it is drawing)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
