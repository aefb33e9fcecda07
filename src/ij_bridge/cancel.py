"""Cancellation of long work: time limits, interrupts and ImageJ's Esc, without Java.

Long loops (training steps, tiles, non-maximum suppression) call :func:`check`
between steps. It returns at once when nothing asked them to stop, and raises
:class:`Cancelled` (or its subclass :class:`TimeLimitExceeded`) when

* a :func:`cancel_scope` that is active passed its deadline (``timeout=``),
* someone called :func:`request_cancel` (a signal handler, a watcher thread,
  a front end's Cancel button), or
* a check registered with the scope or with :func:`add_check` reports a reason
  (the ImageJ front end registers ``IJ.escapePressed()`` this way, so that this
  module never imports Java).

A loop that stops this way leaves nothing half-written: it raises before the
code that would save its result runs.

Scopes nest and are process-wide (not per thread): a signal that arrives on the
main thread, a watcher thread and the thread that trains all see the same
scopes. :func:`install_signal_handlers` turns SIGINT and SIGTERM into
cancellation of every active scope; a second signal ends the process at once.

Examples
--------
>>> from ij_bridge import cancel
>>> with cancel.cancel_scope(timeout=60) as scope:
...     for step in range(3):
...         cancel.check()          # raises when cancelled or past the deadline
>>> scope.reason is None
True
>>> with cancel.cancel_scope() as scope:
...     _ = scope.cancel("interrupted")    # True: this call cancelled it
...     try:
...         cancel.check()
...     except cancel.Cancelled as exc:
...         print(exc.reason)
interrupted
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterator, Sequence

__all__ = [
    "Cancelled", "TimeLimitExceeded", "CancelScope", "cancel_scope", "check", "cancelled",
    "request_cancel", "active", "add_check", "remove_check", "exit_status",
    "install_signal_handlers", "on_signal", "start_watchdog", "TIME_LIMIT", "INTERRUPTED", "TERMINATED", "ESCAPE",
]

#: reasons of a cancellation, as :attr:`Cancelled.reason` gives them
TIME_LIMIT = "time limit"
INTERRUPTED = "interrupted"      # SIGINT, Ctrl-C
TERMINATED = "terminated"        # SIGTERM
ESCAPE = "Esc"                   # ImageJ's Esc key

_EXIT_STATUS = {TIME_LIMIT: 124, INTERRUPTED: 130, TERMINATED: 143}

Check = Callable[[], "str | None"]


class Cancelled(Exception):
    """Long work was stopped before its end; nothing it would have written was written.

    Parameters
    ----------
    reason : str
        Why: ``"time limit"``, ``"interrupted"`` (SIGINT), ``"terminated"``
        (SIGTERM), ``"Esc"`` or a front end's own word.
    detail : str, optional
        More text for the message (e.g. the limit in seconds).
    """

    def __init__(self, reason: str = INTERRUPTED, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason, detail)

    def __str__(self) -> str:
        return f"cancelled ({self.reason}{': ' + self.detail if self.detail else ''})"


class TimeLimitExceeded(Cancelled):
    """The work ran past its time limit."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(TIME_LIMIT, detail)


class CancelScope:
    """One unit of cancellable work: a deadline, a cancelled flag and extra checks.

    Use :func:`cancel_scope` to make one; the attributes are safe to read from
    any thread.

    Attributes
    ----------
    timeout : float or None
        The time limit in seconds it was made with.
    deadline : float or None
        ``time.monotonic()`` value after which :func:`check` raises.
    reason : str or None
        Why it was cancelled, or None while it was not.
    event : threading.Event
        Set as soon as the scope is cancelled (a time limit counts once some
        :func:`check` or :meth:`poll` noticed it), for threads that wait.
    """

    def __init__(self, timeout: float | None = None, checks: Sequence[Check] = ()) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + float(timeout)
        self.checks = list(checks)
        self.reason: str | None = None
        self.event = threading.Event()
        self._lock = threading.Lock()

    def cancel(self, reason: str = INTERRUPTED) -> bool:
        """Cancel the scope; the first reason wins. True if this call cancelled it."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason = reason
        self.event.set()
        return True

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def poll(self) -> str | None:
        """The reason to stop now, or None; notices a passed deadline and the checks."""
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel(TIME_LIMIT)
        if self.reason is None:
            for fn in self.checks:
                why = _run_check(fn)
                if why:
                    self.cancel(why)
                    break
        return self.reason

    def exception(self) -> Cancelled:
        """The exception that :func:`check` raises for this scope."""
        if self.reason == TIME_LIMIT:
            return TimeLimitExceeded(f"{self.timeout:g} s" if self.timeout is not None else "")
        return Cancelled(self.reason or INTERRUPTED)

    @property
    def cancelled(self) -> bool:
        return self.poll() is not None


_scopes: list[CancelScope] = []
_scopes_lock = threading.Lock()
_global_checks: list[Check] = []


def _run_check(fn: Check) -> str | None:
    try:
        why = fn()
    except Exception:  # noqa: BLE001 - a broken check must not stop work
        return None
    if why is True:
        return INTERRUPTED
    return str(why) if why else None


@contextlib.contextmanager
def cancel_scope(timeout: float | None = None, *, checks: Sequence[Check] = ()) -> Iterator[CancelScope]:
    """Make long work in this block cancellable, with an optional time limit.

    Parameters
    ----------
    timeout : float, optional
        Seconds from now after which :func:`check` raises
        :class:`TimeLimitExceeded`.
    checks : sequence of callables
        Called by :func:`check`; one that returns a reason (a string, or True
        for ``"interrupted"``) cancels the scope.

    Yields
    ------
    CancelScope
    """
    scope = CancelScope(timeout, checks)
    with _scopes_lock:
        _scopes.append(scope)
    try:
        yield scope
    finally:
        with _scopes_lock:
            if scope in _scopes:
                _scopes.remove(scope)


def active() -> list[CancelScope]:
    """The scopes open now, outermost first."""
    with _scopes_lock:
        return list(_scopes)


def cancelled() -> str | None:
    """Why the current work should stop (any active scope cancelled or expired), or None."""
    for scope in active():
        why = scope.poll()
        if why is not None:
            return why
    for fn in list(_global_checks):
        why = _run_check(fn)
        if why:
            for scope in active():
                scope.cancel(why)
            return why
    return None


def check() -> None:
    """Raise :class:`Cancelled` if the current work should stop; else return at once.

    Call it between the steps of a long loop. Without an active scope and
    without registered checks it does nothing.
    """
    if not _scopes and not _global_checks:
        return
    for scope in active():
        if scope.poll() is not None:
            raise scope.exception()
    for fn in list(_global_checks):
        why = _run_check(fn)
        if why:
            for scope in active():
                scope.cancel(why)
            raise Cancelled(why)


def request_cancel(reason: str = INTERRUPTED) -> bool:
    """Cancel every active scope (from any thread). True if there was one."""
    scopes = active()
    for scope in scopes:
        scope.cancel(reason)
    return bool(scopes)


def add_check(fn: Check) -> None:
    """Register a check that every :func:`check` calls (e.g. ImageJ's Esc key)."""
    if fn not in _global_checks:
        _global_checks.append(fn)


def remove_check(fn: Check) -> None:
    """Undo :func:`add_check`."""
    with contextlib.suppress(ValueError):
        _global_checks.remove(fn)


def exit_status(reason: str | None) -> int:
    """The conventional exit status for a cancellation reason.

    124 for a time limit (as ``timeout(1)``), 130 for SIGINT (128 + 2), 143 for
    SIGTERM (128 + 15), 1 for anything else.
    """
    return _EXIT_STATUS.get(reason or "", 1)


# --------------------------------------------------------------------------- signals
_SIGNAL_REASONS = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: TERMINATED}
_signal_state: dict[str, object] = {"installed": False, "count": 0}


def _on_signal(signum: int) -> None:
    """Run on the signal thread: cancel the active scopes; a second signal exits now."""
    reason = _SIGNAL_REASONS.get(signum, INTERRUPTED)
    _signal_state["count"] = int(_signal_state["count"]) + 1  # type: ignore[call-overload]
    if int(_signal_state["count"]) >= 2:  # type: ignore[call-overload]
        with contextlib.suppress(Exception):
            sys.stderr.write(f"ij-bridge: {reason} again: stopping now\n")
            sys.stderr.flush()
        os._exit(exit_status(reason))
    if request_cancel(reason):
        with contextlib.suppress(Exception):
            sys.stderr.write(f"ij-bridge: {reason}: stopping after the current step "
                             "(signal again to stop at once)\n")
            sys.stderr.flush()
    for fn in list(_signal_listeners):
        with contextlib.suppress(Exception):
            fn(reason)


_signal_listeners: list[Callable[[str], None]] = []


def on_signal(fn: Callable[[str], None]) -> None:
    """Call ``fn(reason)`` (on a helper thread) whenever SIGINT or SIGTERM arrives."""
    _signal_listeners.append(fn)


def _python_handler(signum, frame) -> None:  # noqa: ARG001 - the signal API
    """Python-level handler (main thread): work in a scope stops through :func:`check`."""
    if _scopes:
        return  # the wake-up thread cancels the scopes
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(exit_status(_SIGNAL_REASONS.get(signum)))


def install_signal_handlers() -> bool:
    """Turn SIGINT and SIGTERM into cancellation (for command-line front ends).

    Python runs signal handlers only on the main thread and only between
    bytecodes, so a main thread busy in native code (the JVM running a macro)
    would not notice them. Therefore the handlers also wake a helper thread
    (``signal.set_wakeup_fd``), which cancels every active scope at once and
    calls the listeners of :func:`on_signal`. A second signal ends the process
    with 130 (SIGINT) or 143 (SIGTERM) without waiting. Without an active
    scope, SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``SystemExit(143)``
    on the main thread as usual.

    Must be called from the main thread; returns False (and does nothing)
    elsewhere or when already installed.
    """
    if _signal_state["installed"] or threading.current_thread() is not threading.main_thread():
        return False
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    for signum in _SIGNAL_REASONS:
        signal.signal(signum, _python_handler)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def wake() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:  # pragma: no cover - the pipe went away
                return
            if not data:
                return
            for signum in data:
                if signum in _SIGNAL_REASONS:
                    _on_signal(signum)

    threading.Thread(target=wake, name="ij-bridge signals", daemon=True).start()
    _signal_state["installed"] = True
    return True


_watchdog: dict[str, threading.Thread] = {}


def start_watchdog(grace: float = 10.0, interval: float = 0.1) -> None:
    """End the process if cancelled work has not stopped ``grace`` seconds later.

    For command-line front ends only: a daemon thread watches the active scopes
    (noticing a passed deadline by itself) and, once one is cancelled, gives
    the work ``grace`` seconds to stop; then it writes a line to stderr and
    calls ``os._exit`` with :func:`exit_status` of the reason. This is the last
    resort for a step that never returns (a native call stuck); the process is
    expected to have ended normally by then.
    """
    if "thread" in _watchdog:
        return

    def watch() -> None:
        while True:
            reason = None
            for scope in active():
                reason = scope.poll()
                if reason is not None:
                    break
            if reason is None:
                time.sleep(interval)
                continue
            time.sleep(grace)
            with contextlib.suppress(Exception):
                sys.stderr.write(f"ij-bridge: {reason}: the work did not stop within {grace:g} s "
                                 "of being cancelled; ending the process\n")
                sys.stderr.flush()
            os._exit(exit_status(reason))

    t = threading.Thread(target=watch, name="ij-bridge cancel watchdog", daemon=True)
    _watchdog["thread"] = t
    t.start()
