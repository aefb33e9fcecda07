"""Any ImageJ command from Python, with Python errors: :func:`run_plugin`.

PyImageJ's ``ij.py.run_plugin(plugin, args, ij1_style)`` is ``IJ.run`` with a
dict of arguments. :func:`run_plugin` takes the same arguments and adds what a
notebook needs:

* the options can be a macro options string (as the Macro Recorder writes it)
  or a dict, formatted as PyImageJ formats it (:func:`argstring`);
* an unknown command name is a :class:`KeyError` naming the closest commands,
  before anything runs (``IJ.run`` would show "Unrecognized command");
* what ImageJ reports with ``IJ.error`` (no image open, a bad number in the
  options, the error of an IJ Bridge command) is raised as
  :class:`~ij_bridge.commands.CommandError` instead of a dialog;
* under a virtual display no dialog waits for a click: a command whose
  options miss a value opens its dialog, which is closed, and the error says
  to pass the value in the options;
* it returns the images the command opened (as
  :func:`~ij_bridge.commands.run_command` does).

It lives in ``commands/`` (not ``imagej/``) because it installs the IJ Bridge
commands first, so that ``run_plugin("StarDist 2D (torch)", ...)`` works as well.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from ..imagej._java import jc
from . import registry

__all__ = ["run_plugin", "argstring"]


def argstring(args: str | Mapping[str, Any] | None, ij1_style: bool = True) -> str:
    """A macro options string from a dict of arguments (PyImageJ's ``ij.py.argstring``).

    ``True`` is the key alone (ImageJ 1.x's checked checkbox) or, with
    ``ij1_style=False``, ``key=true``; ``False`` is left out (or ``key=false``);
    an ``ImagePlus`` is its title; other values are written as text in
    brackets where they need them (:func:`~ij_bridge.commands.registry.quote_option`).
    A string is returned as it is.

    Raises
    ------
    TypeError
        For a value ``None`` (say ``False`` for an unchecked box, or leave the key out).

    >>> argstring({"sigma": 2, "stack": True, "scaled": False, "title": "my image"})
    'sigma=2 stack title=[my image]'
    >>> argstring({"stack": True, "scaled": False}, ij1_style=False)
    'stack=true scaled=false'
    """
    if args is None:
        return ""
    if isinstance(args, str):
        return args
    parts = []
    for key, value in args.items():
        key = str(key)
        if " " in key or not key:
            raise ValueError(f"option key {key!r} must be one word (ImageJ keeps a label's first word)")
        if value is True:
            parts.append(key if ij1_style else f"{key}=true")
        elif value is False:
            if not ij1_style:
                parts.append(f"{key}=false")
        elif value is None:
            raise TypeError(f"option {key}=None has no macro form: give False for an unchecked "
                            "checkbox, or leave the key out for the default")
        elif isinstance(value, (int, float)):
            parts.append(f"{key}={value}")
        elif _is_imageplus(value):
            parts.append(f"{key}={registry.quote_option(str(value.getTitle()))}")
        else:
            text = str(value)
            parts.append(f"{key}={text if text and ' ' not in text and '[' not in text else registry.quote_option(text)}")
    return " ".join(parts)


def _is_imageplus(value: Any) -> bool:
    try:
        import jpype

        return jpype.isJVMStarted() and isinstance(value, jc.ImagePlus)
    except Exception:  # pragma: no cover
        return False


def _known_commands() -> dict:
    table = jc.Menus.getCommands()
    return {} if table is None else table


def run_plugin(plugin: str, args: str | Mapping[str, Any] | None = None, ij1_style: bool = True,
               imp: Any = None) -> list:
    """Run any ImageJ command (``IJ.run``) with errors raised in Python.

    The signature is PyImageJ's ``ij.py.run_plugin``. IJ Bridge commands are
    installed first, so both ImageJ's own commands (``"Gaussian Blur..."``)
    and ours (``"StarDist 2D (torch)"``) run.

    Parameters
    ----------
    plugin : str
        The command's name as in ImageJ's menus (``"Gaussian Blur..."``).
    args : str or dict, optional
        Macro options: a string (``"sigma=2 stack"``) or a dict (:func:`argstring`).
        Without options ImageJ shows the command's dialog: a user answers it in
        ``mode="interactive"``; under a virtual display it is closed and the
        run fails with a message saying to pass the options.
    ij1_style : bool
        How ``True``/``False`` are written (:func:`argstring`).
    imp : ImagePlus, optional
        The image to run on; default the active image.

    Returns
    -------
    list of ImagePlus
        The images the command opened that are still open, oldest first
        (empty for a command that changes ``imp`` in place or only measures).

    Raises
    ------
    HeadlessError
        In ``mode="headless"`` (ImageJ 1.x runs no command there); start with ``mode="virtual"``.
    KeyError
        No command of that name; the message names the closest ones.
    CommandError
        The command reported an error (``IJ.error``, a dialog nobody can answer, an
        IJ Bridge command's error); the message is ImageJ's.

    Notes
    -----
    ImageJ's own commands ignore option keys they do not have (IJ Bridge
    commands refuse them); check the keys against the Macro Recorder's line.
    """
    import jpype

    from ..imagej import runtime
    from .runner import closing_dialogs

    options = argstring(args, ij1_style)
    registry.install_commands()  # starts ImageJ if needed, and makes our commands known
    runtime.require_display(f"run_plugin({plugin!r})")
    if plugin in registry.registered_commands():
        return registry.run_command(plugin, options, imp)
    known = _known_commands()
    if not known.containsKey(plugin):
        names = [str(k) for k in known.keySet()]
        close = difflib.get_close_matches(plugin, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            "; the names are as in ImageJ's menus, with their '...' (Plugins > Utilities > Find Commands)"
        raise KeyError(f"ImageJ has no command named {plugin!r}{hint}")
    IJ = jc.IJ
    interactive = runtime.mode() == "interactive"
    with registry.command_lock:
        IJ.getErrorMessage()  # read and clear an older message
        open_before = set(_image_ids())
        dialog_errors: list[str] = []
        IJ.redirectErrorMessages(True)  # IJ.error goes to the Log and getErrorMessage, no dialog
        try:
            if interactive:  # the user answers the dialogs
                registry._ij_run(IJ, plugin, options, imp, jpype)
            else:
                with closing_dialogs() as dialog_errors:
                    registry._ij_run(IJ, plugin, options, imp, jpype)
            message = IJ.getErrorMessage()  # before the reset below, which clears it
        finally:
            IJ.redirectErrorMessages(False)
        errors = ([_one_line(str(message))] if message is not None else []) + \
            [_dialog_error(plugin, e) for e in dialog_errors if e]
        if errors:
            raise registry.CommandError(f"{plugin}: " + "\n".join(dict.fromkeys(errors)))
        return registry._images_opened_since(open_before)


def _one_line(text: str) -> str:
    """ImageJ's multi-line message as one line (``"Numeric value expected...; Key: "sigma"..."``)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _dialog_error(plugin: str, text: str) -> str:
    if "asked for input" in text:  # the closer cancelled the command's dialog
        return (f"its dialog asked for input that nobody can give under a virtual display; pass "
                f"the values as options, e.g. run_plugin({plugin!r}, \"key=value ...\") (the Macro "
                "Recorder, Plugins > Macros > Record..., shows them)")
    return _one_line(text)


def _image_ids() -> list[int]:
    from ..imagej.windows import image_ids

    return image_ids()
