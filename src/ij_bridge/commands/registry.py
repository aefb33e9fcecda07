"""Python functions as ImageJ 1.x commands.

A function decorated with :func:`command` becomes an ImageJ command once
:func:`install_commands` ran in a process with ImageJ:

* one JPype ``ij.CommandListener`` (registered with
  ``ij.Executer.addCommandListener``) sees every command before ImageJ looks it
  up, claims ours (by returning ``null``) and runs the Python function **on the
  calling thread** - the macro's thread for ``run("Name", "options")``;
* parameters are read through ``ij.gui.GenericDialog``: a dialog when the
  command comes from a menu, the options string when it comes from a macro, and
  the Macro Recorder records the call like a native command;
* the command is listed in ``ij.Menus.getCommands()`` (so the command finder and
  ``IJ.run`` see it) and, when ImageJ has a menu bar, under
  ``Plugins > IJ Bridge``.

Errors raised by the function become ImageJ errors: a running macro aborts
with the message (``Macro Error``), a menu run shows ``IJ.error``. A
:class:`CommandError`, or an exception of a type named in ``user_errors=``
(e.g. ``ValueError`` raised by a core with a message written for users), is
shown as its message alone; anything else also names its type and logs the
traceback. Commands are
serialised by one process-wide lock, because ImageJ's state (current image,
Results, ROI Manager) is global.

Example
-------
>>> from ij_bridge.commands import command, Number, ImageTitle
>>> @command("Scale Values", params=[ImageTitle("image"), Number("factor", 2.0, digits=2)])
... def scale(ctx, image, factor):
...     ctx.log(f"scaling {image.getTitle()} by {factor}")
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .. import cancel
from ..imagej._java import jc
from ..progress import RemainingTime, format_seconds

log = logging.getLogger("ij_bridge.commands")

__all__ = [
    "Param", "String", "Number", "Integer", "Checkbox", "Choice", "ImageTitle", "Directory",
    "File", "Message", "ModelChoice", "Command", "CommandContext", "CommandError", "command", "install_commands",
    "registered_commands", "get_command", "run_command", "trim_key", "DEFAULT_MENU",
    "command_lock", "last_error", "quote_option", "parse_options", "check_options",
    "BUILTIN_MODULES", "load_builtin_commands", "builtin_commands",
]

DEFAULT_MENU = "Plugins>IJ Bridge"
NONE_IMAGE = "None"

#: Serialises every command (and the macro runner): ImageJ's state is global.
command_lock = threading.RLock()


class CommandError(Exception):
    """An error meant for the user of a command (shown without a traceback)."""


# --------------------------------------------------------------------------- parameters
def trim_key(label: str) -> str:
    """The macro key ImageJ derives from a dialog label (``ij.Macro.trimKey``).

    >>> trim_key("probability threshold")
    'probability'
    >>> trim_key("Model: folder")
    'model'
    """
    key = label.split(" ", 1)[0]
    key = key.split(":", 1)[0]
    return key.lower()


@dataclass(frozen=True)
class Param:
    """One dialog field of a command.

    Use the constructors :func:`String`, :func:`Number`, :func:`Integer`,
    :func:`Checkbox`, :func:`Choice`, :func:`ImageTitle`, :func:`Directory`,
    :func:`File` and :func:`Message` rather than this class.

    Attributes
    ----------
    key : str
        The macro key (``key=value``); the value is passed to the function as
        the keyword argument of the same name.
    kind : str
        Field type.
    default : Any
        Default value (dialog pre-set, and value when a macro omits the key;
        note that ImageJ reads an omitted *checkbox* as unchecked in macros).
    label : str
        Dialog label; its first word, lower-cased, is ``key``.
    """

    key: str
    kind: str
    default: Any = None
    label: str = ""
    choices: tuple[str, ...] = ()
    digits: int = 0
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    help: str = ""
    #: for ``kind == "model"``: which models the choice offers (``workflows.models.MODEL_KINDS``)
    model_kind: str = ""

    def __post_init__(self) -> None:
        label = self.label or self.key
        object.__setattr__(self, "label", label)
        if self.kind == "message":
            return
        if not self.key.isidentifier():
            raise ValueError(f"parameter key {self.key!r} must be a Python identifier")
        if trim_key(label) != self.key:
            raise ValueError(
                f"label {label!r} gives the macro key {trim_key(label)!r}, not {self.key!r}: "
                "start the label with the key (ImageJ keeps the first word, lower-cased)"
            )
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} of {self.key!r} is not one of {self.choices}")
        if self.kind == "model":
            from ..workflows.models import MODEL_KINDS

            if self.model_kind not in MODEL_KINDS:
                raise ValueError(f"model kind {self.model_kind!r} of {self.key!r} is not one of {MODEL_KINDS}")


def String(key: str, default: str = "", label: str = "", help: str = "") -> Param:
    """A text field."""
    return Param(key, "string", default, label, help=help)


def Number(key: str, default: float, digits: int = 2, label: str = "", *, minimum: float | None = None,
           maximum: float | None = None, help: str = "") -> Param:
    """A numeric field (a Python ``float``)."""
    return Param(key, "number", float(default), label, digits=digits, minimum=minimum,
                 maximum=maximum, help=help)


def Integer(key: str, default: int, label: str = "", *, minimum: int | None = None,
            maximum: int | None = None, help: str = "") -> Param:
    """A numeric field that must hold a whole number (a Python ``int``)."""
    return Param(key, "integer", int(default), label, digits=0, minimum=minimum, maximum=maximum,
                 help=help)


def Checkbox(key: str, default: bool = False, label: str = "", help: str = "") -> Param:
    """A checkbox. In a macro the key alone means checked; absent means unchecked."""
    return Param(key, "checkbox", bool(default), label, help=help)


def Choice(key: str, choices: Sequence[str], default: str | None = None, label: str = "",
           help: str = "") -> Param:
    """A drop-down list; macro values are matched case-insensitively."""
    choices = tuple(str(c) for c in choices)
    return Param(key, "choice", choices[0] if default is None else default, label, choices=choices,
                 help=help)


def ImageTitle(key: str, label: str = "", *, optional: bool = False, help: str = "") -> Param:
    """An open image chosen by title; the function receives the ``ImagePlus``.

    The default is the active image (or ``None`` when ``optional``). With
    ``optional=True`` the value ``None`` is offered and passed as Python ``None``.
    """
    return Param(key, "image", None, label, optional=optional, help=help)


def Directory(key: str, default: str = "", label: str = "", help: str = "") -> Param:
    """A folder path with a *Browse* button."""
    return Param(key, "directory", default, label, help=help)


def File(key: str, default: str = "", label: str = "", help: str = "") -> Param:
    """A file path with a *Browse* button."""
    return Param(key, "file", default, label, help=help)


def ModelChoice(key: str, kind: str, default: str = "", label: str = "", help: str = "") -> Param:
    """A model: a drop-down list in the dialog, any name or path in a macro.

    The dialog offers the bundled models of ``kind`` (``"stardist2d"``,
    ``"stardist3d"``, ``"n2v"``), for StarDist 2D the Fiji plugin's model names,
    the models used recently and *From file...*, which opens a chooser for a
    model folder or file (a ``config.json`` chosen means its folder). The
    Recorder records the model itself (``model=[/path/to/model]``), so that the
    line replays. A macro's ``model=`` value is read as a text field is: any
    path or name, listed or not, reaches the command unchanged.

    After a successful run the model goes first in the recent list of its kind
    (:func:`ij_bridge.workflows.models.remember_model`).
    """
    return Param(key, "model", str(default), label, help=help, model_kind=kind)


def Message(text: str) -> Param:
    """A line of text in the dialog (not a parameter)."""
    return Param("", "message", None, text)


# --------------------------------------------------------------------------- options
def quote_option(value: str) -> str:
    """``value`` quoted for an ImageJ macro options string, so that ``Macro.getValue`` gives it back.

    ``[value]`` when its square brackets (if any) are balanced - ImageJ counts
    nested brackets - else ``'value'`` (ImageJ 1.53 reads single-quoted values
    too), so that a file named ``x].tif`` arrives whole.

    Raises
    ------
    ValueError
        For a value with unbalanced brackets *and* a single quote, or a line break:
        ImageJ's options cannot carry it.

    >>> quote_option("a b")
    '[a b]'
    >>> quote_option("/data/x].tif")
    "'/data/x].tif'"
    """
    value = str(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} contains a line break, which ImageJ macro options cannot carry")
    depth = 1
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                break
    if depth == 1:
        return f"[{value}]"
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"{value!r} has unbalanced square brackets and a single quote; ImageJ macro "
                     "options cannot carry both: rename it")


def parse_options(options: str) -> list[tuple[str, str | None]]:
    """Split a macro options string into ``(key, value)`` pairs, as ImageJ reads them.

    ``key=value`` (to the next space), ``key=[value]`` (nested brackets counted, as
    ``ij.Macro.getValue`` does), ``key='value'``, and bare words (checked checkboxes:
    value ``None``). Commas between options (as in Fiji's recorded lines) are skipped.

    Raises
    ------
    CommandError
        For an unterminated ``[`` or ``'`` (ImageJ would silently use the default).

    >>> parse_options("model=[my model] normalize low=1")
    [('model', 'my model'), ('normalize', None), ('low', '1')]
    """
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(options)
    while i < n:
        if options[i].isspace() or options[i] == ",":
            i += 1
            continue
        j = i
        while j < n and not options[j].isspace() and options[j] != "=":
            j += 1
        key = options[i:j]
        if j >= n or options[j] != "=":
            out.append((key, None))
            i = j
            continue
        j += 1
        if j < n and options[j] == "[":
            depth, k = 1, j + 1
            while k < n:
                if options[k] == "[":
                    depth += 1
                elif options[k] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            if k >= n:
                raise CommandError(
                    f"option {key}=[ has no closing ']' (in {options.strip()!r}): write "
                    f"{key}=[value] with the ']' (a value with an unmatched ']' goes in single quotes, "
                    f"{key}='value')")
            out.append((key, options[j + 1:k]))
            i = k + 1
        elif j < n and options[j] == "'":
            k = options.find("'", j + 1)
            if k < 0:
                raise CommandError(f"option {key}=' has no closing quote (in {options.strip()!r}): "
                                   f"write {key}='value'")
            out.append((key, options[j + 1:k]))
            i = k + 1
        else:
            k = j
            while k < n and not options[k].isspace():
                k += 1
            out.append((key, options[j:k]))
            i = k
    return out


def check_options(cmd: "Command", options: str) -> None:
    """Refuse options that the command does not have (ImageJ would ignore them silently).

    Raises
    ------
    CommandError
        An unknown key, an unterminated value, a key given twice, a checkbox given a
        value, or another field given without one; the message lists the valid keys.
        Also options that ImageJ's own reading (``Macro.getValue`` for fields,
        ``GenericDialog``'s word match for checkboxes) would take differently from
        how they were written, e.g. ``low=`` inside another value.
    """
    import difflib

    params = {p.key: p for p in cmd.params if p.kind != "message"}

    def valid() -> str:
        return ", ".join(k if params[k].kind == "checkbox" else f"{k}=" for k in params) or "none"

    try:
        pairs = parse_options(options)
    except CommandError as exc:
        raise CommandError(f"{exc}; the options are: {valid()}") from None
    seen: set[str] = set()
    for key, value in pairs:
        p = params.get(key)
        if p is None:
            close = difflib.get_close_matches(key.lower(), list(params), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            shown = key if value is None else f"{key}="
            raise CommandError(f"unknown option {shown!r}{hint}; the options are: {valid()}")
        if key in seen:
            raise CommandError(f"option {key} is given twice; give it once (options: {valid()})")
        seen.add(key)
        if p.kind == "checkbox" and value is not None:
            raise CommandError(f"{key} is a checkbox: write {key!r} alone to switch it on and leave it "
                               f"out to switch it off (not {key}={value})")
        if p.kind != "checkbox" and value is None:
            raise CommandError(f"option {key} needs a value: {key}=... (options: {valid()})")
    # what ImageJ itself will read must be what was written: a key inside another value
    # ("text=[low=5]") would otherwise reach the command instead of the real option
    given = dict(pairs)
    padded = options if options.endswith(" ") else options + " "  # as Macro.getOptions() gives it
    for key, p in params.items():
        if p.kind == "checkbox":
            seen_by_imagej = _imagej_is_match(padded, key + " ")
            if seen_by_imagej and key not in given:
                raise CommandError(
                    f"ImageJ would switch the checkbox {key} on: the word {key!r} stands inside "
                    "another option's value; put that value in [brackets]")
            if key in given and not seen_by_imagej:
                raise CommandError(
                    f"ImageJ would not see the checkbox {key}: an unbracketed '[' in a value before "
                    "it hides it; put values with brackets in [brackets]")
        elif _imagej_value(padded, key) != given.get(key):
            raise CommandError(
                f"ImageJ would read {key}= from inside another option's value (as "
                f"{_imagej_value(padded, key)!r}); give {key}= before that option, or remove "
                f"'{key}=' from the value")


def _imagej_value(options: str, key: str) -> str | None:
    """The value ``ij.Macro.getValue(options, key, null)`` returns (ImageJ 1.53t's rules)."""
    k = key + "="
    index = -1
    while True:  # the first 'key=' not preceded by a letter
        index = options.find(k, index + 1)
        if index < 0:
            return None
        if index == 0 or not options[index - 1].isalpha():
            break
    rest = options[index + len(k):]
    if not rest:
        return None
    if rest[0] == "'":
        end = rest.find("'", 1)
        return None if end < 0 else rest[1:end]
    if rest[0] == "[":
        depth = 1
        for i in range(1, len(rest)):
            depth += {"[": 1, "]": -1}.get(rest[i], 0)
            if depth == 0:
                return rest[1:i]
        return None
    end = rest.find(" ")
    return None if end < 0 else rest[:end]


def _imagej_is_match(options: str, word: str) -> bool:
    """Whether ImageJ's ``GenericDialog`` sees the checkbox ``word`` (``"key "``) in ``options``."""
    if options.startswith(word):
        return True
    word = " " + word
    in_literal = False
    for i in range(len(options) - len(word) + 1):
        c = options[i]
        if in_literal and c == "]":
            in_literal = False
        elif c == "[":
            in_literal = True
        if c != word[0] or in_literal or (i > 1 and options[i - 1] == "="):
            continue
        if options.startswith(word, i):
            return True
    return False


# --------------------------------------------------------------------------- commands
@dataclass
class Command:
    """A registered command: its ImageJ name, menu, parameters and function."""

    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...]
    menu: str | None = DEFAULT_MENU
    help: str = ""
    #: exception types whose message is shown to the user as is (like :class:`CommandError`)
    user_errors: tuple[type[BaseException], ...] = ()

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params if p.kind != "message"]

    def is_user_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is meant for the user: a :class:`CommandError` or one of :attr:`user_errors`."""
        return isinstance(exc, (CommandError, *self.user_errors))


_REGISTRY: dict[str, Command] = {}


def command(name: str, params: Iterable[Param] = (), menu: str | None = DEFAULT_MENU,
            help: str = "", *, user_errors: Iterable[type[BaseException]] = (),
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(ctx, **values)`` as the ImageJ command ``name``.

    Parameters
    ----------
    name : str
        The command name used by ``run(name, options)`` and shown in menus.
    params : iterable of Param
        Dialog fields in order; each value reaches the function as a keyword
        argument named after the field's key.
    menu : str or None
        Menu path (``"Plugins>IJ Bridge"``); ``None`` for a command that only
        macros call.
    help : str
        One-line description (dialog and documentation).
    user_errors : iterable of exception types
        Exceptions the function lets through that are the user's to fix, e.g.
        ``(ValueError, FileNotFoundError)`` from a core whose messages are
        written for users. When the command runs, they are reported as a
        :class:`CommandError` is: the message alone, no traceback in the log.
        Other exceptions are reported with their type, as bugs.

    Returns
    -------
    callable
        A decorator that returns the function unchanged.

    Examples
    --------
    A negative value makes ``math.sqrt`` raise ``ValueError("math domain error")``,
    which the user then sees as ``Square Root: math domain error``::

        @command("Square Root", params=[Number("value", 4.0)], user_errors=(ValueError,))
        def square_root(ctx, value):
            ctx.log(str(math.sqrt(value)))
    """
    params = tuple(params)
    user_errors = tuple(user_errors)
    for t in user_errors:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"command {name!r}: user_errors must be exception classes, got {t!r}")
    keys = [p.key for p in params if p.kind != "message"]
    if len(set(keys)) != len(keys):
        raise ValueError(f"command {name!r}: duplicate parameter keys {keys}")

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            old = _REGISTRY[name].func
            if (old.__module__, old.__qualname__) != (func.__module__, func.__qualname__):
                raise ValueError(f"command {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        _REGISTRY[name] = Command(name, func, params, menu, help, user_errors)
        if _installed.listener is not None:  # already installed: add the menu entry now
            _install_menu_item(_REGISTRY[name])
        return func

    return decorator


def registered_commands() -> dict[str, Command]:
    """All registered commands by name (a copy)."""
    return dict(_REGISTRY)


def get_command(name: str) -> Command:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no IJ Bridge command named {name!r}; known: {sorted(_REGISTRY)}") from None


# --------------------------------------------------------------------------- context
class CommandContext:
    """What a running command gets besides its parameter values.

    Attributes
    ----------
    name : str
        The command's name.
    options : str or None
        The macro options string, or None for a dialog run.
    from_macro : bool
        True when called with options (macro, ``IJ.run(name, options)``).
    log_interval : float
        Seconds between progress lines in the Log.
    eta_after : float
        Seconds a loop must have run before its remaining time is shown.
    """

    log_interval = 5.0
    eta_after = 2.0

    def __init__(self, name: str, options: str | None):
        self.name = name
        self.options = options
        self.from_macro = options is not None
        self._last_log_time: float | None = None
        self._logged_since_start = False
        self._t0 = time.perf_counter()
        self._remaining = RemainingTime(after=self.eta_after)

    def start_clock(self) -> None:
        """Start timing the work (after the dialog closed): :meth:`elapsed` and the remaining time
        count from here."""
        self._t0 = time.perf_counter()
        self._remaining = RemainingTime(after=self.eta_after)

    # --- feedback ---------------------------------------------------------
    def log(self, message: str) -> None:
        """Write a line to ImageJ's Log window (stdout for ``ij-bridge macro``)."""
        jc.IJ.log(f"{self.name}: {message}")

    def status(self, message: str) -> None:
        """Show ``message`` in ImageJ's status line."""
        jc.IJ.showStatus(f"{self.name}: {message}")

    def progress(self, done: int, total: int, message: str = "") -> None:
        """A ``progress(done, total, message)`` callback for the Python cores.

        Drives ImageJ's progress bar and status line; a line goes to the Log at
        most every :attr:`log_interval` seconds (and a last one at the end of a
        step that logged before), so that long steps show in the Log without
        flooding it. Once a loop has run :attr:`eta_after` seconds, the status
        line and the Log lines also say how long it has left, from its pace so
        far: ``epoch 3/10 (35 s left)`` in the status line, ``[120/500] epoch 3/10, 35 s
        left`` in the Log.
        """
        IJ = jc.IJ
        total = max(int(total), 1)
        done = min(max(int(done), 0), total)
        left = self._remaining.update(done, total)
        eta = f", {format_seconds(math.ceil(left))} left" if left and done < total else ""
        IJ.showProgress(done / total)
        if message:
            IJ.showStatus(f"{self.name}: {message}" + (f" ({eta[2:]})" if eta else ""))
        now = time.perf_counter()
        if self._last_log_time is None:
            self._last_log_time = now
        due = now - self._last_log_time >= self.log_interval
        final = done == total and self._logged_since_start
        if message and (due or final):
            self.log(f"[{done}/{total}] {message}{eta}")
            self._last_log_time = now
            self._logged_since_start = done != total

    def elapsed(self) -> float:
        """Seconds since the work started (:meth:`start_clock`; the dialog's time is not counted)."""
        return time.perf_counter() - self._t0

    # --- images -----------------------------------------------------------
    def image(self, title: str | None = None):
        """The image titled ``title`` or the active image, as an ``ImagePlus``.

        Raises
        ------
        CommandError
            When there is no such image.
        """
        if title:
            imp = _image_by_title(title)
            if imp is None:
                raise CommandError(f"there is no open image titled {title!r}; open titles: "
                                   f"{_open_titles() or 'none'}")
            return imp
        imp = jc.WindowManager.getCurrentImage()
        if imp is None:
            raise CommandError("this command needs an image: open one first (there are no images open)")
        return imp


def _open_titles() -> list[str]:
    from ..imagej.windows import open_titles

    return open_titles()


def _image_by_title(title: str):
    from ..imagej.windows import image_by_title

    return image_by_title(title)  # with equal titles, the newest wins


# --------------------------------------------------------------------------- dialog
def _build_dialog(cmd: Command, ctx: CommandContext):
    import jpype

    gd = jc.GenericDialog(cmd.name)
    if cmd.help and not ctx.from_macro:
        gd.addMessage(cmd.help)
    titles = _open_titles()
    current = jc.WindowManager.getCurrentImage()
    current_title = str(current.getTitle()) if current is not None else None
    for p in cmd.params:
        if p.kind == "message":
            gd.addMessage(p.label)
        elif p.kind == "string":
            gd.addStringField(p.label, str(p.default), max(12, min(40, len(str(p.default)) + 4)))
        elif p.kind in ("number", "integer"):
            gd.addNumericField(p.label, float(p.default), int(p.digits))
        elif p.kind == "checkbox":
            gd.addCheckbox(p.label, bool(p.default))
        elif p.kind == "choice":
            gd.addChoice(p.label, jpype.JArray(jpype.JString)(list(p.choices)), p.default)
        elif p.kind == "image":
            items = ([NONE_IMAGE] if p.optional else []) + titles
            if not items:
                items = [""]
            default = NONE_IMAGE if p.optional else (current_title or items[0])
            gd.addChoice(p.label, jpype.JArray(jpype.JString)(items), default)
        elif p.kind == "directory":
            gd.addDirectoryField(p.label, str(p.default))
        elif p.kind == "file":
            gd.addFileField(p.label, str(p.default))
        elif p.kind == "model":
            if ctx.from_macro:  # any name or path, listed or not (a Choice would refuse others)
                gd.addStringField(p.label, str(p.default), max(12, min(40, len(str(p.default)) + 4)))
            else:
                from ..workflows.models import model_choices, preselected_model

                items = model_choices(p.model_kind, p.default)
                gd.addChoice(p.label, jpype.JArray(jpype.JString)(items),
                             preselected_model(p.model_kind, items, p.default))
        else:  # pragma: no cover - constructors guard this
            raise ValueError(f"unknown parameter kind {p.kind!r}")
    return gd


class _DialogCanceled(Exception):
    """The user cancelled a chooser opened from the dialog (as Cancel in the dialog)."""


def _read_dialog(cmd: Command, gd, ctx: CommandContext) -> dict[str, Any]:
    """Read every field (in order, so that the Recorder records them all), then validate.

    A model choice set to *From file...* asks for the model first (a chooser;
    its Cancel cancels the command), before any field is read: ImageJ resets
    the dialog's read counters while another window is open over it.
    """
    if not ctx.from_macro:
        n_choices = 0  # the Choice widgets in gd.getChoices() order
        for p in cmd.params:
            if p.kind == "model":
                _resolve_from_file(cmd, p, gd.getChoices().get(n_choices))
            if p.kind in ("model", "choice", "image"):
                n_choices += 1
    raw: dict[str, Any] = {}
    for p in cmd.params:
        if p.kind == "message":
            continue
        if p.kind == "model":  # macro: a text field (any name or path); dialog: the Choice
            getter = gd.getNextString if ctx.from_macro else gd.getNextChoice
            raw[p.key] = str(getter()).strip()  # the Recorder records model=[<the model>]
        elif p.kind in ("string", "directory", "file"):
            raw[p.key] = str(gd.getNextString()).strip()
        elif p.kind in ("number", "integer"):
            raw[p.key] = float(gd.getNextNumber())
        elif p.kind == "checkbox":
            raw[p.key] = bool(gd.getNextBoolean())
        else:  # choice, image
            raw[p.key] = str(gd.getNextChoice())
    if gd.invalidNumber():
        raise CommandError(f"invalid number: {gd.getErrorMessage()}")
    return raw


def _resolve_from_file(cmd: Command, p: Param, choice) -> None:
    """When *From file...* is selected in ``choice``, ask for the model and select it instead.

    The chosen path is added to the Choice and selected, so that ``getNextChoice``
    returns it and the Recorder records it (a replayable ``model=[path]``).
    """
    from ..workflows.models import FROM_FILE, chosen_model_path

    if str(choice.getSelectedItem()) != FROM_FILE:
        return
    path = _choose_model_path(f"{cmd.name}: choose the {p.key} (a model folder, or a .zip / file)")
    if path is None:
        raise _DialogCanceled()
    path = chosen_model_path(path)
    choice.add(path)
    choice.select(path)


def _choose_model_path(title: str) -> str | None:
    """A Swing file chooser for a model folder or file (on the event thread); None if cancelled.

    Starts in ImageJ's default directory (``OpenDialog``) and leaves it at the
    chosen model's folder, as ImageJ's own open dialogs do.
    """
    import jpype

    JFileChooser = jc("javax.swing.JFileChooser")
    OpenDialog = jc("ij.io.OpenDialog")
    File = jc("java.io.File")
    EventQueue = jc("java.awt.EventQueue")
    result: dict[str, Any] = {}

    @jpype.JImplements("java.lang.Runnable")
    class _Ask:
        @jpype.JOverride
        def run(self):
            try:
                chooser = JFileChooser()
                chooser.setDialogTitle(title)
                chooser.setFileSelectionMode(JFileChooser.FILES_AND_DIRECTORIES)
                start = OpenDialog.getDefaultDirectory()
                if start is not None:
                    chooser.setCurrentDirectory(File(str(start)))
                if chooser.showOpenDialog(jc.IJ.getInstance()) == JFileChooser.APPROVE_OPTION:
                    f = chooser.getSelectedFile()
                    if f is not None:
                        result["path"] = str(f.getAbsolutePath())
            except Exception as exc:  # noqa: BLE001 - reported on the command's thread
                result["error"] = exc

    ask = _Ask()
    if EventQueue.isDispatchThread():
        ask.run()
    else:
        EventQueue.invokeAndWait(ask)
    if "error" in result:
        raise result["error"]
    path = result.get("path")
    if path:
        import os

        OpenDialog.setDefaultDirectory(os.path.dirname(path))  # the folder holding the choice
    return path


def _validate(cmd: Command, raw: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    import math

    values: dict[str, Any] = {}
    for p in cmd.params:
        if p.kind == "message":
            continue
        v = raw[p.key]
        if p.kind in ("number", "integer"):
            if math.isnan(v):
                raise CommandError(f"{p.key}= needs a number")
            if p.kind == "integer":
                if v != int(v):
                    raise CommandError(f"{p.key}= must be a whole number, got {v:g}")
                v = int(v)
            if p.minimum is not None and v < p.minimum:
                raise CommandError(f"{p.key}= must be at least {p.minimum:g}, got {v:g}")
            if p.maximum is not None and v > p.maximum:
                raise CommandError(f"{p.key}= must be at most {p.maximum:g}, got {v:g}")
        elif p.kind == "choice":
            match = [c for c in p.choices if c.lower() == v.lower()]
            if not match:
                raise CommandError(f"{p.key}=[{v}] is not one of: " + ", ".join(f"[{c}]" for c in p.choices))
            v = match[0]
        elif p.kind == "image":
            if p.optional and (v == "" or v.lower() == NONE_IMAGE.lower()):
                v = None
            else:
                v = ctx.image(v or None)
        values[p.key] = v
    return values


# --------------------------------------------------------------------------- running
@dataclass
class _LastError:
    command: str | None = None
    message: str | None = None
    traceback: str | None = None
    when: float = 0.0


last_error = _LastError()

#: set by the macro runner while it watches for dialogs, so that error
#: dialogs are safe to show (they are closed and their text collected)
_dialog_guard = threading.Event()


def _format_error(exc: BaseException, user_error: bool = False) -> str:
    if user_error or isinstance(exc, CommandError):
        return str(exc) or type(exc).__name__
    try:
        import jpype

        if isinstance(exc, jpype.JException):
            return f"{exc.getClass().getSimpleName()}: {exc.getMessage()}"
    except Exception:  # pragma: no cover
        pass
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_macro_cancel(exc: BaseException) -> bool:
    try:
        import jpype

        return isinstance(exc, jpype.JException) and str(exc.getMessage()) == "Macro canceled"
    except Exception:  # pragma: no cover
        return False


def _ij_run(IJ, name: str, options: str, imp, jpype) -> None:
    """``IJ.run`` the command ``name`` (on ``imp`` when given); a "Macro canceled" abort is swallowed.

    An error in the command aborts with "Macro canceled" after it has been reported (and recorded
    by the caller's error hook); any other Java exception propagates.
    """
    try:
        if imp is not None:
            IJ.run(imp, name, options)
        else:
            IJ.run(name, options)
    except jpype.JException as exc:
        if not _is_macro_cancel(exc):
            raise


def _signal_error(cmd: Command, message: str, interp) -> None:
    """Report a failed command the ImageJ way; aborts a calling macro.

    In interactive mode (or while the macro runner collects dialogs) this is
    ImageJ's own behaviour: a ``Macro Error`` for a macro, ``IJ.error`` for a
    menu run. With no one to close a dialog (virtual/headless display) no
    dialog is opened: the macro is stopped with the message as its error, or
    the message goes to the Log and ``IJ.getErrorMessage()``.
    """
    import jpype

    from ..imagej import runtime

    IJ = jc.IJ
    IJ.showProgress(1.0)
    IJ.showStatus("")
    full = f"{cmd.name}: {message}"
    dialogs_ok = runtime.mode() == "interactive" or _dialog_guard.is_set()
    if interp is not None:
        if not dialogs_ok:
            IJ.log(f"ERROR {full}")
            interp.setIgnoreErrors(True)
        try:
            interp.abort(full)  # Macro Error dialog (or silent stop), then "Macro canceled"
        except jpype.JException as exc:
            if not _is_macro_cancel(exc):
                raise
        return
    if not dialogs_ok:
        IJ.redirectErrorMessages(True)  # IJ.error goes to the Log
    IJ.error(cmd.name, message)  # also Macro.abort(): IJ.run callers get "Macro canceled"


def _execute(cmd: Command) -> None:
    """Run ``cmd`` on the current thread: dialog/options, record, call, report."""
    IJ = jc.IJ
    Macro = jc.Macro
    Recorder = jc.Recorder
    Interpreter = jc.Interpreter
    options = Macro.getOptions()
    ctx = CommandContext(cmd.name, None if options is None else str(options))
    interp = Interpreter.getInstance() if ctx.from_macro else None
    with command_lock:
        try:
            if ctx.from_macro:
                check_options(cmd, ctx.options)
            recording = bool(Recorder.record)
            if recording:
                Recorder.setCommand(cmd.name)
            gd = _build_dialog(cmd, ctx)
            gd.showDialog()
            canceled = gd.wasCanceled()
            if not canceled:
                try:
                    raw = _read_dialog(cmd, gd, ctx)
                except _DialogCanceled:  # a chooser opened from the dialog was cancelled
                    canceled = True
            if canceled:
                if recording:
                    Recorder.setCommand(None)  # nothing ran: nothing to record (as ImageJ's own)
                IJ.showStatus(f"{cmd.name}: canceled")
                return
            if recording:
                # record now, before the function runs other ImageJ commands that
                # would take the Recorder's pending command over
                Recorder.saveCommand()
            values = _validate(cmd, raw, ctx)
            log.info("running %s with %s", cmd.name, {k: v for k, v in raw.items()})
            ctx.start_clock()  # "done in" counts the work, not the time the dialog was open
            with cancel.cancel_scope(checks=_escape_checks()):  # Esc stops it at its next step
                cmd.func(ctx, **values)
            seconds = ctx.elapsed()
            _remember_models(cmd, values, ctx)
            IJ.showProgress(1.0)
            IJ.showStatus(f"{cmd.name}: done in {format_seconds(seconds, digits=1)}")
        except BaseException as exc:  # noqa: BLE001 - every failure must reach ImageJ
            if _is_macro_cancel(exc):  # the macro was aborted already (Esc, error)
                return
            # a cancellation (Esc, a time limit, a signal) is the user's doing: its reason alone
            user_error = cmd.is_user_error(exc) or isinstance(exc, cancel.Cancelled)
            message = _format_error(exc, user_error)
            last_error.command, last_error.message = cmd.name, message
            last_error.traceback = traceback.format_exc()
            last_error.when = time.time()
            if not (user_error or isinstance(exc, cancel.Cancelled)):
                log.error("%s failed:\n%s", cmd.name, last_error.traceback)
            _signal_error(cmd, message, interp)


def _remember_models(cmd: Command, values: dict[str, Any], ctx: CommandContext) -> None:
    """Put the models a successful run used first in their recent lists (never fails the run)."""
    from ..workflows.models import remember_model

    for p in cmd.params:
        if p.kind == "model" and values.get(p.key):
            try:
                remember_model(p.model_kind, values[p.key], log=ctx.log)
            except Exception:  # noqa: BLE001 - a recent-models list never fails a run
                log.debug("could not remember %r", values[p.key], exc_info=True)


def _escape_checks() -> list:
    """ImageJ's Esc key as a cancellation check.

    In every display mode: under a virtual display the image windows are real
    windows too, whose Esc key ImageJ turns into ``IJ.escapePressed()``. The
    flag is reset first, so that only an Esc pressed during this command stops it.
    """
    IJ = jc.IJ
    IJ.resetEscape()
    return [lambda: cancel.ESCAPE if bool(IJ.escapePressed()) else None]


def run_command(name: str, options: str = "", imp=None) -> list:
    """Run a registered command from Python as ``IJ.run(imp, name, options)`` would.

    Unlike ``IJ.run`` this raises :class:`CommandError` with the command's
    message when it fails (``IJ.run`` only aborts the current macro). For
    ImageJ's own commands (``"Gaussian Blur..."``) use
    :func:`ij_bridge.commands.plugins.run_plugin`, which runs any command.

    Parameters
    ----------
    name : str
        Command name.
    options : str
        Macro options (``"key=value flag"``); an empty string shows the dialog
        exactly as ImageJ does. Under a virtual display nobody can answer it:
        it is closed at once and the run fails with a :class:`CommandError`
        saying to pass the options (it never waits).
    imp : ImagePlus, optional
        Image to make active first.

    Returns
    -------
    list of ImagePlus
        The images the command opened that are still open when it returns
        (shown, or held by batch mode), oldest first; empty when it opened
        none (a command that measures, or changes ``imp`` in place). Callers
        that ignored the former ``None`` are unaffected.

    Raises
    ------
    HeadlessError
        In ``mode="headless"``: ImageJ 1.x cannot run commands without a
        display (``IJ.run`` itself fails); the message names ``mode="virtual"``.
    KeyError
        ``name`` is no IJ Bridge command (for an ImageJ command the message
        says to use ``run_plugin``).
    CommandError
        The command failed; its message.
    """
    import jpype

    from ..imagej import runtime
    from ..imagej.windows import image_ids

    install_commands()  # registers the bundled commands too (and starts ImageJ if needed)
    runtime.require_display(f"run_command({name!r})")
    try:
        get_command(name)
    except KeyError:
        table = jc.Menus.getCommands()
        if table is not None and table.containsKey(name):
            raise KeyError(f"{name!r} is an ImageJ command, not an IJ Bridge one: run it with "
                           f"ij_bridge.run_plugin({name!r}, options)") from None
        raise
    import contextlib

    IJ = jc.IJ
    before = last_error.when
    if options.strip() or runtime.mode() == "interactive":
        dialogs = contextlib.nullcontext([])
    else:  # the dialog would wait for a click nobody can give: close it, say what to pass
        from .runner import closing_dialogs

        dialogs = closing_dialogs()
    with command_lock:
        IJ.getErrorMessage()  # clear
        open_before = set(image_ids())
        with dialogs as dialog_texts:
            _ij_run(IJ, name, options, imp, jpype)
        if last_error.when != before:
            raise CommandError(last_error.message)
        if dialog_texts:
            raise CommandError(f"{name}: its dialog was closed, because nobody can answer it under a "
                               f"virtual display; pass the options, e.g. run_command({name!r}, "
                               f"\"{' '.join(f'{k}=...' for k in get_command(name).keys[:2])}\") (the "
                               "Macro Recorder, Plugins > Macros > Record..., shows them)")
        return _images_opened_since(open_before)


def _images_opened_since(open_before: set[int]) -> list:
    """The open images whose IDs are not in ``open_before``, oldest first."""
    from ..imagej.windows import image_ids

    WindowManager = jc.WindowManager
    new = sorted((i for i in image_ids() if i not in open_before), key=abs)  # IDs count down
    images = [WindowManager.getImage(i) for i in new]
    return [imp for imp in images if imp is not None]


# --------------------------------------------------------------------------- installation
@dataclass
class _Installed:
    listener: Any = None
    menus: set[str] = field(default_factory=set)


_installed = _Installed()


def _make_listener():
    import jpype

    @jpype.JImplements("ij.CommandListener")
    class _BridgeCommandListener:
        @jpype.JOverride
        def commandExecuting(self, name):  # noqa: N802 - Java name
            cmd = _REGISTRY.get(str(name))
            if cmd is None:
                return name
            _execute(cmd)
            return None

    return _BridgeCommandListener()


def _install_menu_item(cmd: Command) -> None:
    """Put ``cmd`` in ImageJ's command table, and in its menu bar when there is one."""
    Menus = jc.Menus
    table = Menus.getCommands()
    if table is None:
        return
    if cmd.menu is None:
        if not table.containsKey(cmd.name):
            table.put(cmd.name, f"ij_bridge.commands[{cmd.name}]")
        return
    if cmd.name in _installed.menus and table.containsKey(cmd.name):
        return
    if table.containsKey(cmd.name) and not str(table.get(cmd.name)).startswith("ij_bridge"):
        log.warning("ImageJ already has a command %r; the IJ Bridge command takes precedence", cmd.name)
    if Menus.getMenuBar() is not None and not table.containsKey(cmd.name):
        # Menus.add puts the name in the command table and a menu item (whose
        # ActionListener is ImageJ itself, so a click runs IJ.doCommand(name))
        Menus.add(f"{cmd.menu}>{cmd.name}", f"ij_bridge.commands[{cmd.name}]")
    if not table.containsKey(cmd.name):
        table.put(cmd.name, f"ij_bridge.commands[{cmd.name}]")
    _installed.menus.add(cmd.name)


def _withdraw_command(name: str) -> None:
    """Unregister ``name`` and take it out of ImageJ's command table if we put it there."""
    if _REGISTRY.pop(name, None) is None:
        return
    _installed.menus.discard(name)
    if _installed.listener is None:
        return
    table = jc.Menus.getCommands()
    if table is not None and str(table.get(name)).startswith("ij_bridge.commands["):
        table.remove(name)  # ImageJ's own command of that name (if any) is no longer hidden


#: The modules of ``ij_bridge.commands`` that hold the bundled commands.
BUILTIN_MODULES = ("n2v", "stardist", "rois", "measure", "qc", "fiji_compat")


def load_builtin_commands() -> list[str]:
    """Register the bundled commands; return their names (sorted).

    Imports the modules :data:`BUILTIN_MODULES` (each registers its commands
    with :func:`command`) and registers the Fiji StarDist compatibility command
    ``Command From Macro`` unless ``IJ_BRIDGE_STARDIST_COMPAT`` is ``off`` *now*
    (:func:`.fiji_compat.register_compat_command`). Needs no JVM; idempotent.
    :func:`install_commands` calls it, so the switch is read at install time.
    """
    import importlib

    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(f"ij_bridge.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ij_bridge.commands.{module}":
                raise
    from .fiji_compat import register_compat_command

    register_compat_command()
    return sorted(builtin_commands(load=False))


def builtin_commands(load: bool = True) -> dict[str, Command]:
    """The bundled commands by name (loading them first unless ``load=False``).

    Commands that users or other packages registered with :func:`command`
    are not included; :func:`registered_commands` lists every command.
    """
    if load:
        load_builtin_commands()
    modules = {f"{__package__}.{m}" for m in BUILTIN_MODULES}
    return {name: cmd for name, cmd in _REGISTRY.items() if cmd.func.__module__ in modules}


def _import_builtin_commands() -> None:
    """Deprecated: use :func:`load_builtin_commands`."""
    import warnings

    warnings.warn("ij_bridge.commands.registry._import_builtin_commands is deprecated; use "
                  "ij_bridge.commands.load_builtin_commands()", DeprecationWarning, stacklevel=2)
    load_builtin_commands()


def install_commands(imagej: str | None = None, mode: str = "auto", builtin: bool = True) -> list[str]:
    """Make every registered command available in this process's ImageJ (idempotent).

    Starts ImageJ when needed (:func:`ij_bridge.start`), registers the command
    listener once, and adds each command to ImageJ's command table and to the
    ``Plugins > IJ Bridge`` menu.

    Parameters
    ----------
    imagej, mode
        Passed to :func:`ij_bridge.start` if ImageJ is not running yet.
    builtin : bool
        Also register the bundled commands (:func:`load_builtin_commands`: N2V,
        StarDist, ROIs, measurements, QC, and - unless ``IJ_BRIDGE_STARDIST_COMPAT=off``
        at this call - the Fiji StarDist compatibility command of :mod:`.fiji_compat`).

    Returns
    -------
    list of str
        The names of the installed commands.
    """
    from ..imagej import runtime

    if builtin:
        load_builtin_commands()
    with command_lock:
        if not runtime.is_started():
            runtime.start(imagej, mode=mode)
        if _installed.listener is None:
            listener = _make_listener()
            jc.Executer.addCommandListener(listener)
            _installed.listener = listener
        for cmd in _REGISTRY.values():
            _install_menu_item(cmd)
    return sorted(_REGISTRY)
