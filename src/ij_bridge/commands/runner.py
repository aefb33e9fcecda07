"""Running ImageJ macros from Python, with their output and errors, and never a hang.

:func:`run_macro` runs macro code (or an ``.ijm`` file) in this process's
ImageJ on the calling thread, with every IJ Bridge command installed. While it
runs, a watcher thread

* streams new lines of ImageJ's Log (``print()``) to an ``echo`` callback (the
  CLI prints them to stdout) and collects them;
* closes dialogs nobody can answer. Under a virtual display every dialog is
  closed: error dialogs (``Macro Error``, ``IJ.error``, exception windows) are
  recorded as the macro's error; input dialogs (a ``run()`` without options)
  are cancelled and reported as an error that names the fix; message boxes
  (``showMessage``, ``exit("...")``) are passed on as messages. With a real
  display only error dialogs are closed, so a user can still answer
  ``getNumber`` or ``waitForUser``.

* stops the macro when it is cancelled: a time limit (``timeout=``), a
  signal (:func:`ij_bridge.cancel.install_signal_handlers`) or Esc. The
  interpreter stops at its next statement, a Java sleep (``wait()``) is
  interrupted, and a running IJ Bridge command stops at its next step
  (training and prediction loops call :func:`ij_bridge.cancel.check`), so
  that nothing it would have saved is saved.

The result says whether the macro succeeded and why not. ``exit("message")``
counts as a failure (the message is the error) unless ``exit_ok=True``.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .. import cancel
from ..imagej._java import jc
from ..imagej.windows import close_all_images
from . import registry

__all__ = ["MacroResult", "run_macro", "close_all_images", "closing_dialogs"]

_INFO_TITLES = {"Message", "Macro", ""}  # showMessage(...) (untitled in 1.53t), exit("...")
_ERROR_DIALOG_TITLES = {"Macro Error", "No Image"}


@dataclass
class MacroResult:
    """What a macro run gave.

    Attributes
    ----------
    output : str
        Lines the macro wrote to the Log (``print``), newline-separated.
    ok : bool
        True when the macro ran to its end without a macro or ImageJ error.
    error : str or None
        The error message (with the macro line when ImageJ knows it).
    value : str or None
        The macro's return value (``return`` in a function-less macro), if any.
    messages : list of str
        Texts of message boxes (``showMessage``, ``exit("...")``) that were closed.
    seconds : float
        Wall time.
    cancelled : str or None
        Why the macro was stopped before its end (``"time limit"``,
        ``"interrupted"``, ``"terminated"``, ``"Esc"``), or None.
    exit_message : str or None
        The message of an ``exit("...")`` that ended the macro, or None.
    """

    output: str
    ok: bool
    error: str | None = None
    value: str | None = None
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: str | None = None
    exit_message: str | None = None

    def __bool__(self) -> bool:  # so that `if run_macro(...)` reads naturally
        return self.ok


# --------------------------------------------------------------------------- helpers
def _component_texts(component) -> list[str]:
    """All label/text strings inside an AWT component (dialog text for error messages)."""
    Label = jc.Label
    TextComponent = jc.TextComponent
    Container = jc.Container
    MultiLineLabel = jc.MultiLineLabel
    out: list[str] = []
    if isinstance(component, Label):
        out.append(str(component.getText()))
    elif isinstance(component, MultiLineLabel):
        try:
            f = MultiLineLabel.class_.getDeclaredField("lines")
            f.setAccessible(True)
            lines = f.get(component)
            if lines is not None:
                out.append("\n".join(str(s) for s in lines))
        except Exception:  # pragma: no cover - reflection refused
            pass
    elif isinstance(component, TextComponent):
        out.append(str(component.getText()))
    if isinstance(component, Container):
        for child in component.getComponents():
            out.extend(_component_texts(child))
    return [t for t in out if t.strip()]


def _stop_interpreter(interp) -> None:
    """Make ``interp`` finish after its current statement, from any thread.

    ``Interpreter.abortMacro()`` waits up to 2 s for the macro to end and then
    kills threads; setting its ``done`` flag (what ``abortMacro`` does first)
    is enough and immediate.
    """
    try:
        f = jc.Interpreter.class_.getDeclaredField("done")
        f.setAccessible(True)
        f.setBoolean(interp, True)
    except Exception:  # pragma: no cover - fall back to ImageJ's own way
        interp.abortMacro()


_STOPPER: list = []


def _stopper():
    """An ``ij.macro.Debugger`` that ends the macro at the statement it is asked about.

    The interpreter asks its debugger before every statement (on the macro's
    thread). Throwing ImageJ's "Macro canceled" there ends the macro the way
    ``exit()`` does, at a statement boundary, wherever the macro is - inside a
    ``for`` loop, a block, a user function. Setting the interpreter's ``done``
    flag instead stops it only half-way: a block left that way reports a
    spurious "'}' expected", and a loop can clear the flag again and go on.
    """
    if not _STOPPER:
        import jpype

        RuntimeException = jc.RuntimeException
        Interpreter = jc.Interpreter

        @jpype.JImplements("ij.macro.Debugger")
        class _Stopper:
            @jpype.JOverride
            def debug(self, interp, mode):  # noqa: ARG002 - Java signature
                try:  # what exit() does before it throws: tidy batch mode, tables, plots
                    m = Interpreter.class_.getDeclaredMethod("finishUp")
                    m.setAccessible(True)
                    m.invoke(interp)
                except Exception:  # pragma: no cover - best effort
                    pass
                raise RuntimeException("Macro canceled")

        _STOPPER.append(_Stopper())
    return _STOPPER[0]


def _cancel_interpreter(interp) -> None:
    """Make ``interp`` end before its next statement (from any thread); see :func:`_stopper`."""
    interp.setDebugger(_stopper())


class _LogReader:
    """Reads new lines of ImageJ's Log window since it was created."""

    def __init__(self) -> None:
        self.seen = self._count()

    @staticmethod
    def _panel():
        win = jc.WindowManager.getWindow("Log")
        if win is not None and isinstance(win, jc.TextWindow):
            return win.getTextPanel()
        return None

    def _count(self) -> int:
        panel = self._panel()
        return int(panel.getLineCount()) if panel is not None else 0

    def new_lines(self) -> list[str]:
        panel = self._panel()
        if panel is None:
            return []
        n = int(panel.getLineCount())
        if n < self.seen:  # print("\\Clear")
            self.seen = 0
        lines = [str(panel.getLine(i)) for i in range(self.seen, n)]
        self.seen = n
        return lines


class _Watcher(threading.Thread):
    """Streams the Log, closes dialogs and stops a cancelled macro (see module docs)."""

    def __init__(self, echo: Callable[[str], None] | None, close_all: bool, interval: float = 0.05,
                 scope: cancel.CancelScope | None = None) -> None:
        super().__init__(name="ij-bridge macro watcher", daemon=True)
        self.echo = echo
        self.close_all = close_all
        self.interval = interval
        self.scope = scope
        self.lines: list[str] = []
        self.messages: list[str] = []
        self.exit_messages: list[str] = []  # texts of "Macro" message boxes (exit("..."))
        self.errors: list[str] = []
        self.interp = None
        self.java_thread = None  # the Java thread the macro runs on
        self.error_line: int | None = None
        self.stopped = False  # the macro was stopped because the scope was cancelled
        self._seen: set[int] = set()  # message boxes already recorded (interactive mode)
        self._stop_event = threading.Event()
        self._log = _LogReader()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.poll()  # last lines

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                self.poll()
                if self.scope is not None and not self.stopped and self.scope.poll() is not None:
                    self.stopped = True
                    if self.interp is not None:
                        _cancel_interpreter(self.interp)
                    self._interrupt()
        finally:
            Thread = jc.Thread
            if Thread.isAttached():
                Thread.detach()

    def _abort(self) -> None:
        """Stop the macro at its next statement (before a closed dialog returns)."""
        if self.interp is not None:
            _stop_interpreter(self.interp)

    def _interrupt(self) -> None:
        """Wake the macro's thread from a Java sleep (``wait(ms)``, a blocking wait)."""
        if self.java_thread is not None:
            try:
                self.java_thread.interrupt()
            except Exception:  # pragma: no cover - the thread is gone
                pass

    def poll(self) -> None:
        try:
            for line in self._log.new_lines():
                self.lines.append(line)
                if self.echo is not None:
                    self.echo(line)
            self._close_dialogs()
        except Exception as exc:  # pragma: no cover - never kill the watcher
            self.errors.append(f"(watcher) {exc}")

    def _close_dialogs(self) -> None:
        Window = jc.Window
        Dialog = jc.Dialog
        Frame = jc.Frame
        TextWindow = jc.TextWindow
        MessageDialog = jc.MessageDialog
        WindowEvent = jc.WindowEvent
        for w in Window.getWindows():
            if not w.isShowing():
                continue
            title = str(w.getTitle()) if isinstance(w, (Dialog, Frame)) else ""
            if isinstance(w, TextWindow) and title == "Exception":
                text = str(w.getTextPanel().getText())
                self._abort()
                self.errors.append("Java exception in an ImageJ command:\n" + text.strip())
                w.dispose()
                continue
            if not isinstance(w, Dialog):
                continue
            text = "\n".join(_component_texts(w)).strip()
            is_error_dialog = title in _ERROR_DIALOG_TITLES
            is_message = isinstance(w, MessageDialog) and not is_error_dialog
            if is_error_dialog:
                # the interpreter knows the message; the dialog text adds the line
                text = text.replace("Show \"Debug\" Window", "").strip()
                found = re.search(r" in line (\d+)", text)
                if found and self.error_line is None:
                    self.error_line = int(found.group(1))
                self.errors.append(text or title)
            elif is_message and title in _INFO_TITLES:
                if not self.close_all:
                    # the user reads and closes it; remember an exit("...") once
                    if title == "Macro" and int(w.hashCode()) not in self._seen:
                        self._seen.add(int(w.hashCode()))
                        self.exit_messages.append(text)
                    continue
                self.messages.append(text)
                if title == "Macro":
                    self.exit_messages.append(text)
            elif is_message:  # IJ.error(title, msg) outside a run() call
                self.errors.append(f"{title}: {text}" if text else title)
            else:  # an input dialog
                if not self.close_all:
                    continue
                self.errors.append(
                    f"the dialog {title!r} asked for input that nobody can give here; pass its "
                    "values as the options of run() (record them with Plugins > Macros > Record...)"
                )
            if not is_error_dialog and not (is_message and title in _INFO_TITLES):
                self._abort()  # first, so that nothing after the dialog runs
            w.dispatchEvent(WindowEvent(w, WindowEvent.WINDOW_CLOSING))
            if w.isShowing():
                w.dispose()


# --------------------------------------------------------------------------- API
#: ImageJ methods through which a macro asks for another image window to come to the front;
#: an activation that arrives while the macro's thread is in one of them is asked for.
_SELECTING_METHODS = {("ij.IJ", "selectWindow"), ("ij.WindowManager", "toFront"),
                      ("ij.WindowManager", "activateWindow"), ("ij.WindowManager", "putBehind")}


@contextlib.contextmanager
def _current_image_pinned(macro_thread) -> Iterator[None]:
    """Keep the macro's current image the one it opened or selected last (issue 12, item 8).

    ``ImagePlus.show()`` in a macro waits until the new window is activated, and
    then the macro goes on. Without a window manager (our Xvfb), the activation of
    an *earlier* window can still arrive afterwards: its focus was asked for when it
    was shown, and under CPU load the X server's answer comes late, so Java's focus
    manager activates it again right after the new one (``ACTIVATED b``,
    ``DEACTIVATED b``, ``ACTIVATED a``, all within a millisecond). Its
    ``ImageWindow.windowActivated`` makes the earlier image current, and the next
    statement (``rename``) acts on it.

    While the macro runs, a listener sees every window activation before ImageJ
    does. The activation of the newest image window (the one just shown) or of a
    window the macro asked for (its thread is in ``IJ.selectWindow``, as
    ``selectImage``/``selectWindow`` are) makes that image the macro thread's
    temporary current image (``WindowManager.setTempCurrentImage``, which
    ``getCurrentImage()`` prefers); it is set before ImageJ's ``windowActivated``
    lets the macro go on. Any other activation (a late one of an earlier window)
    changes ImageJ's current window but no longer the macro's current image.
    ImageJ drops the temporary image itself when it makes a window current on the
    macro's thread (``open``: the new window; ``close``: the next one); batch mode
    is left alone (ImageJ pins those images itself).
    """
    import jpype

    ImagePlus = jc.ImagePlus
    WindowManager = jc.WindowManager
    Interpreter = jc.Interpreter
    Toolkit = jc("java.awt.Toolkit")
    WindowEvent = jc("java.awt.event.WindowEvent")
    ImageWindow = jc("ij.gui.ImageWindow")
    state = {"pinned": None}

    def asked_for() -> bool:
        return any((str(f.getClassName()), str(f.getMethodName())) in _SELECTING_METHODS
                   for f in macro_thread.getStackTrace())

    @jpype.JImplements("ij.ImageListener")
    class _Closed:
        @jpype.JOverride
        def imageOpened(self, imp):  # noqa: ARG002 - Java signature
            pass

        @jpype.JOverride
        def imageClosed(self, imp):  # (notified later, on the event thread)
            if state["pinned"] is not None and state["pinned"].equals(imp):
                state["pinned"] = None
                WindowManager.setTempCurrentImage(macro_thread, None)

        @jpype.JOverride
        def imageUpdated(self, imp):  # noqa: ARG002 - Java signature
            pass

    @jpype.JImplements("java.awt.event.AWTEventListener")
    class _Activated:
        @jpype.JOverride
        def eventDispatched(self, event):  # on the event thread, before windowActivated
            try:
                if (event.getID() != WindowEvent.WINDOW_ACTIVATED or Interpreter.isBatchMode()
                        or not isinstance(event.getSource(), ImageWindow)):
                    return
                imp = event.getSource().getImagePlus()
                ids = WindowManager.getIDList()
                if imp is None or ids is None:
                    return
                if imp.getID() == min(int(i) for i in ids) or asked_for():
                    state["pinned"] = imp
                    WindowManager.setTempCurrentImage(macro_thread, imp)
            except Exception:  # pragma: no cover - never break ImageJ's event thread
                pass

    closed, activated = _Closed(), _Activated()
    toolkit = Toolkit.getDefaultToolkit()
    ImagePlus.addImageListener(closed)
    toolkit.addAWTEventListener(activated, jc("java.awt.AWTEvent").WINDOW_EVENT_MASK)
    try:
        yield
    finally:
        toolkit.removeAWTEventListener(activated)
        ImagePlus.removeImageListener(closed)
        if state["pinned"] is not None:
            WindowManager.setTempCurrentImage(macro_thread, None)


def _macro_code(code_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    if isinstance(code_or_path, Path):
        path = code_or_path
    else:
        text = str(code_or_path)
        looks_like_path = "\n" not in text and text.endswith((".ijm", ".txt", ".js", ".bsh")) and "(" not in text
        path = Path(text) if looks_like_path else None
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"macro file {str(path)!r} does not exist")
        return path.read_text(encoding="utf-8"), path
    return str(code_or_path), None


def _esc_pressed() -> str | None:
    """ImageJ's Esc key, as a cancellation check (any display mode: image windows take keys)."""
    return cancel.ESCAPE if bool(jc.IJ.escapePressed()) else None


def _cancel_message(scope: cancel.CancelScope) -> str:
    if scope.reason == cancel.TIME_LIMIT:
        return f"stopped: the macro ran past its time limit of {scope.timeout:g} s"
    if scope.reason == cancel.INTERRUPTED:
        return "stopped: interrupted (SIGINT, Ctrl-C)"
    if scope.reason == cancel.TERMINATED:
        return "stopped: terminated (SIGTERM)"
    if scope.reason == cancel.ESCAPE:
        return "stopped: Esc was pressed"
    return f"stopped: {scope.reason}"


def run_macro(
    code_or_path: str | os.PathLike,
    arg: str = "",
    *,
    echo: Callable[[str], None] | None = None,
    timeout: float | None = None,
    imagej: str | None = None,
    mode: str = "auto",
    exit_ok: bool = False,
) -> MacroResult:
    """Run an ImageJ macro with every IJ Bridge command installed.

    Parameters
    ----------
    code_or_path : str or path
        Macro source code, or the path of an ``.ijm`` file (a ``Path``, or a
        one-line string ending in ``.ijm``/``.txt``).
    arg : str
        What the macro's ``getArgument()`` returns.
    echo : callable, optional
        Called with each new Log line while the macro runs (e.g. ``print``).
    timeout : float, optional
        Seconds after which the macro is stopped (and reported as failed, with
        ``cancelled="time limit"``). A running IJ Bridge command stops at its
        next step (a training step, a tile) and saves nothing.
    imagej, mode
        Passed to :func:`ij_bridge.start` if ImageJ is not running yet.
    exit_ok : bool
        Treat ``exit("message")`` as a normal end (``ok`` stays True and the
        message is in ``messages``). By default it is a failure whose error is
        the message: macros use it to report what went wrong.

    Returns
    -------
    MacroResult
        ``ok`` is False when the macro had an error, a command failed, ImageJ
        reported an error, a dialog wanted input, it ended with
        ``exit("message")`` (unless ``exit_ok``) or it was cancelled
        (``cancelled`` says why).

    Notes
    -----
    Macros are serialised with the commands (ImageJ's state is global); the
    macro runs on the calling thread. The run is a cancellation scope
    (:func:`ij_bridge.cancel.cancel_scope`): :func:`ij_bridge.cancel.request_cancel`
    from another thread, or a signal once
    :func:`ij_bridge.cancel.install_signal_handlers` ran, stops it; in
    so does Esc on an ImageJ window (under a virtual display too).
    """
    import jpype

    code, path = _macro_code(code_or_path)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    registry.install_commands(imagej=imagej, mode=mode)
    from ..imagej import runtime

    IJ = jc.IJ
    Macro = jc.Macro
    Interpreter = jc.Interpreter
    Thread = jc.Thread
    interactive = runtime.mode() == "interactive"
    IJ.resetEscape()  # only an Esc pressed during this macro stops it
    t0 = time.perf_counter()
    with registry.command_lock, cancel.cancel_scope(
            timeout, checks=[_esc_pressed]) as scope:
        IJ.getErrorMessage()  # forget errors of earlier runs
        before = registry.last_error.when
        watcher = _Watcher(echo, close_all=not interactive, scope=scope)
        interp = Interpreter()
        watcher.interp = interp
        watcher.java_thread = Thread.currentThread()
        value = None
        exc_text = None
        ended_by_exit = False
        registry._dialog_guard.set()
        watcher.start()
        try:
            if scope.poll() is None:
                with _current_image_pinned(watcher.java_thread):
                    value = interp.run(code, arg)
        except jpype.JException as exc:
            if str(exc.getMessage()) == "Macro canceled":
                ended_by_exit = True  # exit(), an aborted macro or a failed command
            elif scope.reason is None:
                exc_text = f"{exc.getClass().getName()}: {exc.getMessage()}"
        finally:
            Macro.setOptions(None)
            registry._dialog_guard.clear()
            watcher.stop()
            Thread.interrupted()  # clear an interrupt meant for the stopped macro
        # ImageJ's own Esc handling aborts the interpreter at once, before the watcher's next
        # look: an Esc that ended the macro is its reason, not the error that the interrupted
        # statement left
        if scope.reason is None and _esc_pressed():
            scope.cancel(cancel.ESCAPE)
        errors: list[str] = []
        if scope.reason is not None:
            # everything else is a consequence of stopping it (e.g. the "'}' expected"
            # of a block left half-way, a command's "cancelled")
            errors.append(_cancel_message(scope))
        else:
            if interp.wasError() or (interp.getErrorMessage() is not None):
                msg = str(interp.getErrorMessage() or "macro error")
                line = watcher.error_line if watcher.error_line is not None else int(interp.getLineNumber())
                errors.append(f"{msg} (macro line {line})" if line > 0 else msg)
            if exc_text:
                errors.append(exc_text)
            ij_error = IJ.getErrorMessage()
            if ij_error is not None and not any(str(ij_error) in e for e in errors):
                errors.append(str(ij_error))
            if registry.last_error.when != before and not any(registry.last_error.message in e for e in errors):
                errors.append(f"{registry.last_error.command}: {registry.last_error.message}")
            for e in watcher.errors:
                if not any(e in x or x.split(" (macro line")[0] in e for x in errors):
                    errors.append(e)
        exit_message = watcher.exit_messages[-1] if (ended_by_exit and watcher.exit_messages) else None
        if exit_message is not None and not errors and not exit_ok:
            errors.append(f"the macro ended with exit(\"{' '.join(exit_message.split())}\") "
                          "(a failure; `ij-bridge macro --exit-ok` or exit_ok=True treats it as a normal end)")
    seconds = time.perf_counter() - t0
    ok = not errors
    return MacroResult(
        output="\n".join(watcher.lines),
        ok=ok,
        error=None if ok else "\n".join(errors),
        value=None if value is None else str(value),
        messages=watcher.messages,
        seconds=seconds,
        cancelled=scope.reason,
        exit_message=exit_message,
    )


@contextlib.contextmanager
def closing_dialogs() -> Iterator[list[str]]:
    """Close every ImageJ dialog that opens in this block; yield the list of their texts.

    For work outside a macro (saving a batch file's results) that must never
    wait for a click: error and message dialogs are closed and their texts
    collected, input dialogs cancelled.
    """
    watcher = _Watcher(None, close_all=True)
    watcher.start()
    try:
        yield watcher.errors
    finally:
        watcher.stop()
        watcher.errors.extend(m for m in watcher.messages if m not in watcher.errors)
