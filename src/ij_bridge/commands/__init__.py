"""ImageJ commands backed by Python, and a macro runner.

* :mod:`.registry` - the :func:`command` decorator, dialog parameters,
  :func:`install_commands` (command listener, command table, Plugins > IJ Bridge).
* :mod:`.runner` - :func:`run_macro` with Log capture and error detection.
* :mod:`.plugins` - :func:`run_plugin`: any ImageJ command, errors raised in Python.
* the bundled commands live in ``n2v``, ``stardist``, ``rois``, ``measure``,
  ``qc`` and ``fiji_compat``; :func:`load_builtin_commands` registers them
  (:func:`install_commands` calls it) and :func:`builtin_commands` lists them.

Importing this package starts no JVM.
"""

from __future__ import annotations

from .registry import (
    BUILTIN_MODULES,
    Checkbox,
    Choice,
    Command,
    CommandContext,
    CommandError,
    Directory,
    File,
    ImageTitle,
    Integer,
    Message,
    ModelChoice,
    Number,
    Param,
    String,
    builtin_commands,
    command,
    get_command,
    install_commands,
    load_builtin_commands,
    registered_commands,
    run_command,
)
from .plugins import argstring, run_plugin
from .runner import MacroResult, close_all_images, run_macro

__all__ = [
    "Checkbox", "Choice", "Command", "CommandContext", "CommandError", "Directory", "File",
    "ImageTitle", "Integer", "Message", "ModelChoice", "Number", "Param", "String", "command", "get_command",
    "install_commands", "registered_commands", "run_command", "MacroResult", "run_macro",
    "close_all_images", "BUILTIN_MODULES", "load_builtin_commands", "builtin_commands",
    "run_plugin", "argstring",
]
