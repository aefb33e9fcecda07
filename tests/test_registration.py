"""Registration made public: built-in commands, the Fiji-compatibility switch, user errors."""

from __future__ import annotations

import logging

import pytest

from ij_bridge.commands import (
    BUILTIN_MODULES,
    CommandError,
    Number,
    builtin_commands,
    command,
    install_commands,
    load_builtin_commands,
    registered_commands,
    run_command,
    run_macro,
)

BUILTIN = ["Command From Macro", "Labels to ROIs", "Measure Labels", "N2V Predict (torch)",
           "N2V Train (torch)", "N2V Train + Predict (torch)", "ROIs to Labels", "Segmentation QC",
           "StarDist 2D (torch)", "StarDist 3D (torch)", "StarDist Train (torch)"]


@command("IJB Test User Errors", params=[Number("case", 0)], menu=None,
         user_errors=(ValueError, FileNotFoundError))
def _user_errors(ctx, case):
    if case == 1:
        raise ValueError("the labels must be integers: convert the image to 16-bit first")
    if case == 2:
        raise FileNotFoundError("model folder '/nowhere' does not exist")
    if case == 3:
        raise KeyError("a bug")
    if case == 4:
        raise ValueError()  # no message: the type name at least


def test_builtin_commands_are_listed_and_loaded():
    assert load_builtin_commands() == sorted(BUILTIN)
    listed = builtin_commands()
    assert sorted(listed) == sorted(BUILTIN)
    assert "IJB Test User Errors" in registered_commands() and "IJB Test User Errors" not in listed
    assert {c.func.__module__.rsplit(".", 1)[1] for c in listed.values()} == set(BUILTIN_MODULES)


def test_the_private_loader_still_works_and_warns():
    from ij_bridge.commands.registry import _import_builtin_commands

    with pytest.warns(DeprecationWarning, match="load_builtin_commands"):
        _import_builtin_commands()
    assert set(BUILTIN) <= set(registered_commands())


def test_user_errors_must_be_exception_types():
    with pytest.raises(TypeError, match="user_errors must be exception classes"):
        command("IJB Bad", user_errors=(ValueError, "oops"))


@pytest.mark.imagej
@pytest.mark.parametrize("case, shown", [
    (1, "IJB Test User Errors: the labels must be integers: convert the image to 16-bit first"),
    (2, "IJB Test User Errors: model folder '/nowhere' does not exist"),
    (4, "IJB Test User Errors: ValueError"),
])
def test_listed_user_errors_are_shown_as_their_message(ij, caplog, case, shown):
    install_commands(builtin=False)
    with caplog.at_level(logging.ERROR, logger="ij_bridge.commands"):
        r = run_macro(f'run("IJB Test User Errors", "case={case}");')
    assert not r.ok
    assert shown in r.error
    assert "Error:" not in r.error.replace(shown, "")  # no "ValueError: ..." prefix
    assert not [rec for rec in caplog.records if "failed" in rec.getMessage()]  # no traceback
    with pytest.raises(CommandError) as err:
        run_command("IJB Test User Errors", f"case={case}")
    assert str(err.value) == shown.split(": ", 1)[1]


@pytest.mark.imagej
def test_other_errors_stay_bugs(ij, caplog):
    install_commands(builtin=False)
    with caplog.at_level(logging.ERROR, logger="ij_bridge.commands"):
        r = run_macro('run("IJB Test User Errors", "case=3");')
    assert not r.ok and "IJB Test User Errors: KeyError: 'a bug'" in r.error
    assert any("IJB Test User Errors failed" in rec.getMessage() and "Traceback" in rec.getMessage()
               for rec in caplog.records)


@pytest.mark.imagej
def test_the_compat_switch_is_read_at_install_time(ij, monkeypatch):
    from ij_bridge.imagej._java import jc

    table = jc.Menus.getCommands()
    try:
        monkeypatch.setenv("IJ_BRIDGE_STARDIST_COMPAT", "off")
        names = install_commands()
        assert "Command From Macro" not in names and "Command From Macro" not in builtin_commands()
        assert not table.containsKey("Command From Macro")  # ImageJ's own (if any) is not hidden
        r = run_macro('run("Command From Macro", "command=[de.csbdresden.stardist.StarDist2D], args=[]");')
        assert not r.ok and "Unrecognized command" in r.error and "IJ Bridge" not in r.error
        monkeypatch.setenv("IJ_BRIDGE_STARDIST_COMPAT", "on")
        assert "Command From Macro" in install_commands()
        assert str(table.get("Command From Macro")).startswith("ij_bridge.commands[")
        r = run_macro('run("Command From Macro", "command=[no.such.Plugin], args=[]");')
        assert not r.ok and "IJ Bridge provides only de.csbdresden.stardist.StarDist2D" in r.error
    finally:
        monkeypatch.delenv("IJ_BRIDGE_STARDIST_COMPAT", raising=False)
        install_commands()
    assert "Command From Macro" in registered_commands()
