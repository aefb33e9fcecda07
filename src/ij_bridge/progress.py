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

import time
from typing import Callable

__all__ = ["Progress", "RemainingTime", "format_seconds"]

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``."""


def format_seconds(seconds: float, digits: int = 0) -> str:
    """A duration as a person reads it: ``"35 s"``, ``"2 min 05 s"``, ``"1 h 02 min"``.

    ``digits`` decimals are shown below a minute.

    >>> format_seconds(0.42, digits=1), format_seconds(35.4), format_seconds(125), format_seconds(3725)
    ('0.4 s', '35 s', '2 min 05 s', '1 h 02 min')
    """
    seconds = max(0.0, float(seconds))
    if seconds < 59.5:
        return f"{seconds:.{digits}f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {(whole % 3600) // 60:02d} min"


class RemainingTime:
    """The time left of a loop that reports ``progress(done, total, ...)``, from its pace so far.

    A change of ``total``, or ``done`` going back, starts a new phase (the
    prediction after the training, the next image): its pace is measured
    from where the previous phase ended. Nothing is estimated until a phase
    has run ``after`` seconds, so that short runs show no guess.

    Parameters
    ----------
    after : float
        Seconds a phase must have run before an estimate is given.
    clock : callable
        ``time.perf_counter`` (a test passes its own).

    Examples
    --------
    >>> t = [0.0]
    >>> eta = RemainingTime(after=2.0, clock=lambda: t[0])
    >>> t[0] = 1.0; eta.update(10, 100) is None        # too early to say
    True
    >>> t[0] = 4.0; round(eta.update(40, 100), 1)      # 40 steps in 4 s: 60 more take 6 s
    6.0
    >>> t[0] = 5.0; eta.update(100, 100)               # done
    0.0
    """

    def __init__(self, after: float = 2.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.after = float(after)
        self.clock = clock
        self.restart()

    def restart(self) -> None:
        """Measure from now (the work starts)."""
        self._t0 = self.clock()
        self._last_t = self._t0
        self._total: int | None = None
        self._done = 0

    def update(self, done: int, total: int) -> float | None:
        """Seconds left of this phase (0 at its end), or None while too early to say."""
        now = self.clock()
        if self._total is not None and (total != self._total or done < self._done):
            self._t0 = self._last_t  # a new phase began when the previous one last reported
        self._total, self._done, self._last_t = total, done, now
        if done >= total:
            return 0.0
        spent = now - self._t0
        if done <= 0 or spent < self.after:
            return None
        return spent / done * (total - done)
