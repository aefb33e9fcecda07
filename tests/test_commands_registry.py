"""The command registry and the macro runner, in this process's ImageJ (virtual display)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import fill_generic_dialog

from ij_bridge.commands import (
    Checkbox,
    Choice,
    CommandError,
    ImageTitle,
    Integer,
    Number,
    String,
    command,
    install_commands,
    run_command,
    run_macro,
)
from ij_bridge.commands.registry import Param, registered_commands, trim_key

pytestmark = pytest.mark.imagej

CALLS: list[dict] = []


@command("IJB Test Echo", params=[
    Number("value", 1.5, digits=2, label="value (any number)"),
    Integer("count", 3, minimum=1),
    Choice("output", ["ROI Manager", "Label Image", "Both"], "Both"),
    Checkbox("flag", False),
    String("text", "hello there", label="text: free"),
    ImageTitle("image", optional=True),
], help="A test command.")
def _echo(ctx, value, count, output, flag, text, image):
    CALLS.append(dict(value=value, count=count, output=output, flag=flag, text=text,
                      image=None if image is None else str(image.getTitle())))
    for i in range(count):
        ctx.progress(i + 1, count, f"step {i + 1}")
    ctx.log(f"value={value:g} count={count} output={output} flag={flag} text={text}")
    if value < 0:
        raise CommandError("value must not be negative")
    if value > 1000:
        raise ZeroDivisionError("boom")


@command("IJB Test Fill", params=[Number("level", 7, digits=1), Integer("size", 8, minimum=1)])
def _fill(ctx, level, size):
    """Creates a size x size 32-bit image filled with level (for the Recorder replay test)."""
    import jpype

    IJ = jpype.JClass("ij.IJ")
    imp = IJ.createImage("filled", "32-bit black", size, size, 1)
    imp.getProcessor().set(level)
    imp.show()


@pytest.fixture(scope="module")
def installed(ij):
    install_commands(builtin=False)
    return ij


def test_trim_key_agrees_with_imagej(ij):
    import jpype

    Macro = jpype.JClass("ij.Macro")
    for label in ["model", "probability threshold", "Model: folder", "low (percentile)", "exclude"]:
        assert trim_key(label) == str(Macro.trimKey(label))


def test_labels_must_give_the_key():
    with pytest.raises(ValueError, match="macro key 'model'"):
        Param("folder", "string", "", label="model folder")
    with pytest.raises(ValueError, match="duplicate"):
        command("IJB Dup", params=[Number("a", 1), Number("a", 2)])


def test_options_reach_the_function(installed):
    CALLS.clear()
    r = run_macro('newImage("blobs 1", "8-bit black", 16, 16, 1);\n'
                  'run("IJB Test Echo", "value=2.25 count=2 output=[label image] flag text=[a b c] image=[blobs 1]");\n'
                  'print("after " + getArgument());', arg="ARG")
    assert r.ok, r.error
    assert CALLS == [dict(value=2.25, count=2, output="Label Image", flag=True, text="a b c", image="blobs 1")]
    assert "IJB Test Echo: value=2.25 count=2 output=Label Image flag=True text=a b c" in r.output
    assert r.output.splitlines()[-1] == "after ARG"
    run_macro('close("*");')


def test_defaults_when_keys_are_absent(installed):
    CALLS.clear()
    r = run_macro('run("IJB Test Echo", "count=1");')
    assert r.ok, r.error
    assert CALLS == [dict(value=1.5, count=1, output="Both", flag=False, text="hello there", image=None)]


@pytest.mark.parametrize("options, message", [
    ("value=-1", "IJB Test Echo: value must not be negative"),
    ("value=5000", "IJB Test Echo: ZeroDivisionError: boom"),
    ("count=0", "count= must be at least 1"),
    ("count=1.5", "count= must be a whole number"),
    ("output=Circles", "output=[Circles] is not one of: [ROI Manager], [Label Image], [Both]"),
    ("image=[no such image]", "no open image titled 'no such image'"),
])
def test_errors_abort_the_macro(installed, options, message):
    t0 = time.perf_counter()
    r = run_macro(f'print("before");\nrun("IJB Test Echo", "{options}");\nprint("after");')
    assert not r.ok
    assert message in r.error
    assert "(macro line 2)" in r.error
    assert "before" in r.output and "after" not in r.output
    assert time.perf_counter() - t0 < 10


def test_progress_reaches_the_log_and_progress_bar(installed, monkeypatch):
    import jpype

    from ij_bridge.commands.registry import CommandContext

    monkeypatch.setattr(CommandContext, "log_interval", 0.0)
    r = run_macro('run("IJB Test Echo", "count=3");')
    assert r.ok, r.error
    assert [ln for ln in r.output.splitlines() if "] step" in ln] == [
        "IJB Test Echo: [1/3] step 1", "IJB Test Echo: [2/3] step 2", "IJB Test Echo: [3/3] step 3"]
    status = str(jpype.JClass("ij.ImageJ").getStatusBarText())
    assert status.startswith("IJB Test Echo: done in")


def test_run_command_raises(installed):
    with pytest.raises(CommandError, match="must not be negative"):
        run_command("IJB Test Echo", "value=-3 count=1")
    run_command("IJB Test Echo", "value=3 count=1")  # and works again afterwards


def test_macro_errors_never_hang(installed):
    cases = {
        'x = y + 1;': "Undefined variable",
        'run("No Such Command Anywhere", "");': "Unrecognized command",
        'newImage("a", "8-bit", 8, 8, 1); run("Gaussian Blur...");': "asked for input",
        'open("/nonexistent/file.tif");': "not found",
    }
    for code, message in cases.items():
        t0 = time.perf_counter()
        r = run_macro(code + '\nprint("after");')
        assert not r.ok and message in r.error, (code, r)
        assert "after" not in r.output, code
        assert time.perf_counter() - t0 < 10, code
    run_macro('close("*");')
    # exit("message") reports a failure (issue 12, item 9) unless exit_ok; its box never waits
    failed = run_macro('exit("bye");')
    assert not failed.ok and failed.exit_message == "bye" and 'exit("bye")' in failed.error
    ok = run_macro('exit("bye");', exit_ok=True)
    assert ok.ok and ok.messages == ["bye"] and ok.exit_message == "bye"
    assert run_macro('showMessage("just a note");').ok  # a message box is not an error


def test_timeout(installed):
    r = run_macro('i = 0; while (true) { i++; wait(10); }\nprint("never");', timeout=1.0)
    assert not r.ok and "time limit" in r.error


def test_commands_are_in_imagej_tables_and_menu(installed):
    import jpype

    Menus = jpype.JClass("ij.Menus")
    table = Menus.getCommands()
    assert table.containsKey("IJB Test Echo") and table.containsKey("IJB Test Fill")
    bar = Menus.getMenuBar()
    assert bar is not None

    def items(menu):
        for i in range(menu.getItemCount()):
            yield menu.getItem(i)

    plugins = next(bar.getMenu(i) for i in range(bar.getMenuCount()) if str(bar.getMenu(i).getLabel()) == "Plugins")
    bridge = [m for m in items(plugins) if str(m.getLabel()) == "IJ Bridge"]
    assert len(bridge) == 1
    labels = [str(m.getLabel()) for m in items(bridge[0])]
    install_commands(builtin=False)  # idempotent
    assert [str(m.getLabel()) for m in items(bridge[0])] == labels
    assert labels.count("IJB Test Echo") == 1
    assert set(registered_commands()) <= set(str(k) for k in table.keySet())


def test_dialog_run_is_recorded_and_the_line_replays(installed):
    import jpype

    IJ = jpype.JClass("ij.IJ")
    Recorder = jpype.JClass("ij.plugin.frame.Recorder")
    WindowManager = jpype.JClass("ij.WindowManager")
    run_macro('close("*");')
    recorder = Recorder(False)
    try:
        IJ.doCommand("IJB Test Fill")  # as a menu click does: a new thread, a dialog
        fill_generic_dialog("IJB Test Fill", numbers={0: "3.5", 1: "5"}, timeout=20)
        deadline = time.monotonic() + 20
        while WindowManager.getImage("filled") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        text = str(recorder.getText())
    finally:
        recorder.close()
    dialog_imp = WindowManager.getImage("filled")
    assert dialog_imp is not None
    dialog_pixels = np.array(dialog_imp.getProcessor().getFloatArray())
    line = [ln for ln in text.splitlines() if "IJB Test Fill" in ln]
    assert line == ['run("IJB Test Fill", "level=3.5 size=5");']
    run_macro('close("*");')
    r = run_macro(line[0] + '\nprint(getWidth() + " " + getPixel(2, 2));')
    assert r.ok, r.error
    assert r.output.splitlines()[-1] == "5 3.5"
    replay = np.array(WindowManager.getImage("filled").getProcessor().getFloatArray())
    np.testing.assert_array_equal(replay, dialog_pixels)
    run_macro('close("*");')


def test_menu_item_opens_the_dialog_and_cancel_does_nothing(installed):
    import jpype

    Menus = jpype.JClass("ij.Menus")
    ActionEvent = jpype.JClass("java.awt.event.ActionEvent")
    Window = jpype.JClass("java.awt.Window")
    GenericDialog = jpype.JClass("ij.gui.GenericDialog")
    WindowEvent = jpype.JClass("java.awt.event.WindowEvent")
    WindowManager = jpype.JClass("ij.WindowManager")
    run_macro('close("*");')
    bar = Menus.getMenuBar()
    plugins = next(bar.getMenu(i) for i in range(bar.getMenuCount()) if str(bar.getMenu(i).getLabel()) == "Plugins")
    bridge = next(plugins.getItem(i) for i in range(plugins.getItemCount())
                  if str(plugins.getItem(i).getLabel()) == "IJ Bridge")
    item = next(bridge.getItem(i) for i in range(bridge.getItemCount())
                if str(bridge.getItem(i).getLabel()) == "IJB Test Fill")

    def click():
        for listener in item.getActionListeners():  # what AWT does on a click
            listener.actionPerformed(ActionEvent(item, ActionEvent.ACTION_PERFORMED, item.getActionCommand()))

    def find_dialog():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for w in Window.getWindows():
                if isinstance(w, GenericDialog) and w.isShowing() and str(w.getTitle()) == "IJB Test Fill":
                    return w
            time.sleep(0.05)
        raise AssertionError("no dialog")

    click()
    dialog = find_dialog()
    dialog.dispatchEvent(WindowEvent(dialog, WindowEvent.WINDOW_CLOSING))  # the user closes it
    time.sleep(0.5)
    assert WindowManager.getImage("filled") is None
    click()
    fill_generic_dialog("IJB Test Fill", numbers={1: "4"}, timeout=20)
    deadline = time.monotonic() + 20
    while WindowManager.getImage("filled") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert WindowManager.getImage("filled").getWidth() == 4
    run_macro('close("*");')


def test_commands_are_serialised(installed):
    """Two threads calling commands at once never interleave inside a command."""
    inside = []
    overlap = []

    @command("IJB Test Slow", menu=None, params=[Integer("n", 1)])
    def _slow(ctx, n):
        if inside:
            overlap.append(n)
        inside.append(n)
        time.sleep(0.05)
        inside.pop()

    install_commands(builtin=False)

    def worker(n):
        for _ in range(3):
            run_command("IJB Test Slow", f"n={n}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not overlap
