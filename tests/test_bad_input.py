"""Bad input gets one clear line naming the problem and the fix, and values never change silently.

Macro options are checked against the command's own keys; odd files (1-D, 48-bit RGB)
read as ImageJ opens them; ROIs with NaN/inf, planes over ImageJ's limit, nonsense
calibration and unrepresentable integers are refused or warned about; a batch input
named ``x].tif`` reaches the macro whole; ``stardist predict`` writes the same bytes
on every run.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile
import xarray as xr

from conftest import fill_generic_dialog

from ij_bridge.commands import Checkbox, Choice, CommandError, ImageTitle, Number, String, command
from ij_bridge.commands.registry import (check_options, get_command, parse_options, quote_option,
                                         registered_commands)
from ij_bridge.io import LossyConversionWarning, imread, imwrite, read_rois, write_rois

REPO = Path(__file__).resolve().parents[1]
CALLS: list[dict] = []


@command("IJB BadInput Echo", params=[
    Number("value", 1.0, digits=2, label="value (a number)"),
    Choice("output", ["ROI Manager", "Label Image", "Both"], "Both"),
    Checkbox("flag", False, label="flag (a switch)"),
    String("text", "two words", label="text: free"),
    ImageTitle("image", optional=True),
], menu=None)
def _echo(ctx, value, output, flag, text, image):
    CALLS.append(dict(value=value, output=output, flag=flag, text=text,
                      image=None if image is None else str(image.getTitle())))


@pytest.fixture(scope="module")
def imagej(ij):
    from ij_bridge.commands import install_commands

    install_commands()
    return ij


def _one_line(message: str) -> str:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message
    return message


# --------------------------------------------------------------------------- options (no JVM)
def test_parse_options_follows_imagej():
    assert parse_options("model=[my model] normalize low=1 x='a]b' y=[a[1]b]") == [
        ("model", "my model"), ("normalize", None), ("low", "1"), ("x", "a]b"), ("y", "a[1]b")]
    # Fiji's recorded lines separate options by commas
    line = ("command=[de.csbdresden.stardist.StarDist2D], args=['input':'blobs.gif', "
            "'nTiles':'1'], process=[false]")
    assert [k for k, _ in parse_options(line)] == ["command", "args", "process"]
    with pytest.raises(CommandError, match=r"model=\[ has no closing"):
        parse_options("model=[/bad/path normalize")


@pytest.mark.imagej
@pytest.mark.parametrize("value", ["plain", "a b", "/d/x].tif", "/d/[x].tif", "/d/x[.tif", "it's [ok]"])
def test_quote_option_gives_the_value_back_through_imagej(ij, value):
    import jpype

    options = f"input={quote_option(value)} output=[after]"
    Macro = jpype.JClass("ij.Macro")
    assert str(Macro.getValue(options, "input", "MISSING")) == value
    assert str(Macro.getValue(options, "output", "MISSING")) == "after"
    assert parse_options(options) == [("input", value), ("output", "after")]


def test_quote_option_refuses_what_imagej_cannot_carry():
    with pytest.raises(ValueError, match="rename"):
        quote_option("it's x].tif")


@pytest.mark.parametrize("options, message", [
    ("model=[/bad/path normalize", r"model=\[ has no closing '\]'.*the options are: input=, model=, normalize"),
    ("probabilty=0.99", r"unknown option 'probabilty=' \(did you mean probability\?\); the options are: "),
    ("Model=x", r"unknown option 'Model=' \(did you mean model\?\)"),
    ("normalise", r"unknown option 'normalise' \(did you mean normalize\?\)"),
    ("normalize=false", r"normalize is a checkbox: write 'normalize' alone"),
    ("low", r"option low needs a value"),
    ("low=1 low=2", r"option low is given twice"),
])
def test_bad_options_name_the_problem_and_the_valid_keys(options, message):
    from ij_bridge.commands.registry import _import_builtin_commands

    _import_builtin_commands()
    with pytest.raises(CommandError) as err:
        check_options(get_command("StarDist 2D (torch)"), options)
    assert re.search(message, _one_line(str(err.value))), str(err.value)


def test_every_documented_macro_call_passes_the_check():
    """The options of every run("<our command>", "...") in docs, macros and sources are valid."""
    from ij_bridge.commands.registry import _import_builtin_commands

    _import_builtin_commands()
    cmds = registered_commands()
    call = re.compile(r'run\(\s*\\?"([^"\\]+)\\?"\s*,\s*\\?"((?:[^"\\]|\\.)*?)\\?"\s*\)')
    files = [p for pattern in ("docs/**/*.md", "*.md", "macros/**/*.ijm", "src/**/*.py",
                               "src/**/*.ijm", "examples/**/*")
             for p in REPO.glob(pattern) if p.is_file()]
    checked = 0
    for f in files:
        for m in call.finditer(f.read_text(errors="ignore")):
            name, options = m.group(1), m.group(2)
            if name not in cmds or "{" in options or '+' in options or options.strip() == "...":
                continue
            try:
                check_options(cmds[name], options.replace('\\"', '"'))
            except CommandError as exc:
                raise AssertionError(f"{f.relative_to(REPO)}: run({name!r}, {options!r}): {exc}") from None
            checked += 1
    assert checked >= 5, checked


# --------------------------------------------------------------------------- options (ImageJ)
@pytest.mark.imagej
def test_misspelt_or_unterminated_options_stop_the_macro(imagej):
    from ij_bridge.commands import run_macro

    for options, expected in [("probabilty=0.99", "unknown option 'probabilty='"),
                              ("model=[/bad/path normalize", "has no closing ']'"),
                              ("model=[/no/such/model]", "model=[/no/such/model] does not exist")]:
        t0 = time.perf_counter()
        r = run_macro('newImage("img", "16-bit noise", 64, 64, 1);\n'
                      f'run("StarDist 2D (torch)", "{options}");\nprint("after");')
        assert not r.ok and expected in r.error, (options, r.error)
        assert "the options are" in r.error or "does not exist" in r.error
        assert "after" not in r.output
        assert time.perf_counter() - t0 < 20
        run_macro('close("*");')


@pytest.mark.imagej
def test_recorded_dialog_line_passes_the_check_and_replays(imagej):
    """A menu run with every kind of field (checkbox on, choice and text with spaces, image)
    is recorded by ImageJ's Recorder; the recorded line replays to the same values."""
    import jpype

    from ij_bridge.commands import run_macro

    IJ = jpype.JClass("ij.IJ")
    Recorder = jpype.JClass("ij.plugin.frame.Recorder")
    run_macro('close("*"); newImage("my image", "8-bit black", 8, 8, 1);')
    CALLS.clear()
    recorder = Recorder(False)
    try:
        IJ.doCommand("IJB BadInput Echo")
        # checkbox: ImageJ's dialog has no helper for it here, so tick it through AWT
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dialogs = [w for w in jpype.JClass("java.awt.Window").getWindows()
                       if isinstance(w, jpype.JClass("ij.gui.GenericDialog")) and w.isShowing()
                       and str(w.getTitle()) == "IJB BadInput Echo"]
            if dialogs:
                dialogs[0].getCheckboxes().get(0).setState(True)
                break
            time.sleep(0.05)
        fill_generic_dialog("IJB BadInput Echo", numbers={0: "2.5"}, strings={0: "a b c"},
                            choices={0: "Label Image", 1: "my image"}, timeout=20)
        deadline = time.monotonic() + 20
        while not CALLS and time.monotonic() < deadline:
            time.sleep(0.05)
        text = str(recorder.getText())
    finally:
        recorder.close()
    line = [ln for ln in text.splitlines() if "IJB BadInput Echo" in ln]
    assert len(line) == 1, text
    options = re.match(r'run\("IJB BadInput Echo", "(.*)"\);', line[0]).group(1)
    check_options(get_command("IJB BadInput Echo"), options)
    first = CALLS[0]
    assert first == dict(value=2.5, output="Label Image", flag=True, text="a b c", image="my image")
    CALLS.clear()
    r = run_macro(line[0])
    assert r.ok, r.error
    assert CALLS == [first]
    run_macro('close("*");')


@pytest.mark.imagej
def test_stardist_3d_with_a_2d_model_names_the_macro_fix(imagej):
    from ij_bridge.commands import run_macro

    r = run_macro('newImage("stack", "16-bit noise", 64, 64, 6);\n'
                  'run("StarDist 3D (torch)", "model=stardist_nuclei2d");')
    assert not r.ok
    msg = _one_line(r.error.splitlines()[0])
    assert "is a 2D model" in msg and 'run("StarDist 2D (torch)"' in msg, msg
    assert ".load" not in msg and "StarDist2D" not in msg
    run_macro('close("*");')


# --------------------------------------------------------------------------- training pairs
def _pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    from ij_bridge.synthetic import synthetic_nuclei

    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for i in range(4):
        x, y = synthetic_nuclei((64, 64), n_objects=4, seed=i)
        imwrite(imgs / f"n{i}.tif", (np.clip(x, 0, None) * 1000).astype(np.uint16))
        if i == 2:  # the mask of n2.tif is cropped: the pair does not match
            y = y[:, :60]
        imwrite(masks / f"n{i}.tif", y.astype(np.uint16))
    return imgs, masks


def test_cli_training_pairs_that_do_not_match_are_named(tmp_path, capsys):
    from ij_bridge.cli import main

    imgs, masks = _pair_folders(tmp_path)
    t0 = time.perf_counter()
    rc = main(["stardist", "train", "--images", str(imgs), "--masks", str(masks),
               "--model", str(tmp_path / "m.zip"), "--epochs", "1", "--steps", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "n2.tif" in err[0] and "differ in size" in err[0], err
    assert "pair " not in err[0]  # not an index after a random split
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.imagej
def test_command_training_pairs_that_do_not_match_are_named(imagej, tmp_path):
    from ij_bridge.commands import run_macro

    imgs, masks = _pair_folders(tmp_path)
    r = run_macro(f'run("StarDist Train (torch)", "images=[{imgs}] masks=[{masks}] '
                  f'model=[{tmp_path / "m.zip"}] epochs=1 steps=1 patch=32");')
    assert not r.ok
    assert "n2.tif" in r.error and "differ in size" in r.error, r.error
    assert not (tmp_path / "m.zip").exists()


# --------------------------------------------------------------------------- odd files
@pytest.mark.imagej
def test_one_row_and_48_bit_rgb_tiffs_read_as_imagej_opens_them(ij, tmp_path):
    from ij_bridge import from_imageplus

    one_d = tmp_path / "row.tif"
    tifffile.imwrite(one_d, np.arange(10, dtype=np.uint8))  # a 1-D array: axes 'X'
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, np.arange(20 * 30 * 3, dtype=np.uint16).reshape(20, 30, 3), photometric="rgb")
    for path in (one_d, rgb16):
        ours = imread(path)
        theirs = from_imageplus(ij.openImage(str(path)))
        assert ours.dims == theirs.dims and ours.dtype == theirs.dtype, (path, ours.dims, theirs.dims)
        np.testing.assert_array_equal(ours.values, theirs.values)
    assert imread(rgb16).dims == ("c", "y", "x")


def test_predict_on_rgb16_says_channels_in_one_line(tmp_path, capsys):
    from ij_bridge.cli import main

    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint16), photometric="rgb")
    rc = main(["stardist", "predict", str(path), "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "3 channels but the model takes one" in err[0], err


# --------------------------------------------------------------------------- images
def test_plane_over_imagejs_limit_fails_at_once():
    from ij_bridge import to_imageplus

    big = np.broadcast_to(np.uint8(0), (50_000, 50_000))  # 2.5e9 pixels, no memory
    xr.DataArray(np.zeros((2, 2)))  # xarray's one-time lazy imports are not part of the check
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"50000 x 50000 = 2500000000 pixels .*2\*\*31 - 1.*crop, tile"):
        to_imageplus(big)
    big3 = xr.DataArray(np.broadcast_to(np.float64(1), (2, 46_341, 46_341)), dims=("z", "y", "x"))
    with pytest.raises(ValueError, match="2147488281 pixels"):
        to_imageplus(big3)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.imagej
@pytest.mark.parametrize("attrs, message", [
    ({"units": "um"}, r"attrs\['units'\] must map dims to units, e.g. \{'x': 'um', 'y': 'um'\}"),
    ({"units": {"x": 5}}, r"must be a unit string"),
    ({"units": {"q": "um"}}, r"names the dim 'q'"),
    ({"calibration": "nonsense"}, r"attrs\['calibration'\] must be a dict"),
    ({"calibration": {"pixel_width": -1.0}}, r"pixel size\) must be positive"),
    ({"calibration": {"pixel_depth": "big"}}, r"must be a finite number"),
    ({"calibration": {"pixel_size": 0.5}}, r"unknown key 'pixel_size'; its keys are pixel_width"),
])
def test_nonsense_units_or_calibration_are_one_line(ij, attrs, message):
    from ij_bridge import to_imageplus

    da = xr.DataArray(np.zeros((4, 5), np.uint8), dims=("y", "x"), attrs=attrs)
    with pytest.raises(ValueError) as err:
        to_imageplus(da)
    assert re.search(message, _one_line(str(err.value))), str(err.value)
    with pytest.raises(ValueError):  # the same check before a TIFF is written
        imwrite(Path("/nonexistent/never.tif"), da)


@pytest.mark.imagej
def test_a_good_calibration_still_goes_through(ij):
    from ij_bridge import from_imageplus, to_imageplus

    da = xr.DataArray(np.zeros((3, 4, 5), np.uint8), dims=("z", "y", "x"),
                      coords={"x": np.arange(5) * 0.5, "y": np.arange(4) * 0.5, "z": np.arange(3) * 2.0},
                      attrs={"units": {"x": "um", "y": "um", "z": "um"}})
    back = from_imageplus(to_imageplus(da))
    again = from_imageplus(to_imageplus(back))
    assert again.attrs["calibration"] == back.attrs["calibration"]
    assert back.attrs["calibration"]["pixel_depth"] == 2.0


# --------------------------------------------------------------------------- ROIs
def _polygon(bad: float) -> roifile.ImagejRoi:
    roi = roifile.ImagejRoi.frompoints(np.array([[1, 1], [8, bad], [8, 8], [1, 8]], np.float32))
    roi.name = "bad one"
    return roi


@pytest.mark.imagej
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_rois_with_nan_or_inf_are_refused(ij, tmp_path, bad):
    import jpype

    from ij_bridge.imagej.rois import roi_to_java, rois_to_labels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # roifile casting NaN to its int bounds
        roi = _polygon(bad)
    good = roifile.ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]], np.float32))
    with pytest.raises(ValueError, match=r"ROI 2 'bad one' has NaN or infinite coordinates \(point 2"):
        rois_to_labels([good, roi], (16, 16))
    with pytest.raises(ValueError, match="NaN or infinite"):
        roi_to_java(roi.tobytes())
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_rois(tmp_path / "r.zip", [good, roi])
    with pytest.raises(ValueError, match="overlay ROI 2 'bad one' has NaN or infinite"):
        imwrite(tmp_path / "img.tif", np.zeros((16, 16), np.uint8), overlay=[good, roi])
    assert list(tmp_path.iterdir()) == []
    # an ImageJ ROI made in Java with a bad point
    FloatArr = jpype.JArray(jpype.JFloat)
    jroi = jpype.JClass("ij.gui.PolygonRoi")(FloatArr([1.0, 8.0, 8.0]), FloatArr([1.0, float(bad), 8.0]),
                                             3, jpype.JClass("ij.gui.Roi").POLYGON)
    with pytest.raises(ValueError, match=r"ROI 1 .*NaN or infinite coordinates"):
        rois_to_labels([jroi], (16, 16))


def test_roi_sets_are_byte_reproducible(tmp_path):
    rois = [roifile.ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]], np.float32) + i)
            for i in range(3)]
    write_rois(tmp_path / "a.zip", rois)
    time.sleep(2.1)  # zip times have a 2 s resolution
    write_rois(tmp_path / "b.zip", rois)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert len(read_rois(tmp_path / "b.zip")) == 3


def test_stardist_predict_outputs_are_byte_reproducible(tmp_path, capsys):
    from ij_bridge.cli import main
    from ij_bridge.synthetic import synthetic_nuclei

    x, _ = synthetic_nuclei((96, 96), n_objects=8, seed=3)
    (tmp_path / "in").mkdir()
    imwrite(tmp_path / "in" / "cells.tif", (np.clip(x, 0, None) * 1000).astype(np.uint16))
    outs = []
    for k in range(2):
        if k:
            time.sleep(2.1)
        out = tmp_path / f"out{k}"
        assert main(["stardist", "predict", str(tmp_path / "in"), "--output", str(out), "--quiet"]) == 0
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert set(outs[0]) == {"cells_labels.tif", "cells_rois.zip", "cells_objects.csv"}
    assert outs[0] == outs[1]


# --------------------------------------------------------------------------- tables
@pytest.mark.imagej
def test_integers_beyond_2_53_warn_as_images_do(ij):
    from ij_bridge import dataframe_to_results, results_to_dataframe

    df = pd.DataFrame({"id": np.array([2**53 + 1, 7], np.int64), "small": [1, 2],
                       "mixed": pd.Series([2**60 + 3, "text"], dtype=object)})
    with pytest.warns(LossyConversionWarning) as caught:
        dataframe_to_results(df, title="big ints", show=False)
    messages = [str(w.message) for w in caught]
    assert any("column 'id': 1 integer(s) beyond 2**53" in m and "largest change 1" in m for m in messages)
    assert any("column 'mixed'" in m for m in messages)
    assert not any("'small'" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyConversionWarning)
        rt = dataframe_to_results(pd.DataFrame({"id": [2**53, -(2**53), 2**54]}), title="exact", show=False)
    assert results_to_dataframe(rt)["id"].tolist() == [2.0**53, -(2.0**53), 2.0**54]


# --------------------------------------------------------------------------- batch
@pytest.mark.imagej
def test_batch_input_with_a_bracket_reaches_the_macro_whole(clean_imagej, tmp_path):
    from ij_bridge.batch import BatchError, plan_batch, run_batch

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    imwrite(inp / "x].tif", np.zeros((8, 8), np.uint8))
    imwrite(inp / "a[1].tif", np.ones((8, 8), np.uint8))
    macro = tmp_path / "names.ijm"
    macro.write_text('arg = getArgument();\n'
                     'path = call("ij.Macro.getValue", arg, "input", "");\n'
                     'dir = call("ij.Macro.getValue", arg, "output", "");\n'
                     'File.saveString(path, dir + "input.txt");\n')
    report = run_batch(macro, inp, out, pattern="*.tif", show_progress=False)
    assert [r.status for r in report.results] == ["ok", "ok"], [r.error for r in report.results]
    for name, stem in (("x].tif", "x]"), ("a[1].tif", "a[1]")):
        folder = [d for d in out.iterdir() if d.is_dir() and (d / "input.txt").exists()
                  and (d / "input.txt").read_text() == str(inp / name)]
        assert len(folder) == 1, (name, [p.name for p in out.iterdir()])
    # a name that ImageJ's options cannot carry at all is refused before any work
    (inp / "it's x].tif").write_bytes((inp / "x].tif").read_bytes())
    with pytest.raises(BatchError, match="cannot be passed to the macro"):
        plan_batch(macro, inp, tmp_path / "out2", pattern="*.tif")
    assert not (tmp_path / "out2").exists()


def test_fiji_compat_refuses_misspelt_plugin_arguments_and_quotes_titles():
    from ij_bridge.commands.fiji_compat import stardist_options

    with pytest.raises(CommandError, match=r"no argument 'probTresh' \(did you mean 'probThresh'\?\)"):
        stardist_options({"input": "blobs.gif", "probTresh": "0.9"})
    options, _ = stardist_options({"input": "cells].tif", "probThresh": "0.6"})
    assert ("input", "cells].tif") in parse_options(options)
    from ij_bridge.commands.registry import _import_builtin_commands

    _import_builtin_commands()
    check_options(get_command("StarDist 2D (torch)"), options)


@pytest.mark.imagej
@pytest.mark.parametrize("options, message", [
    ("input=[low=5] low=1", r"ImageJ would read low= from inside another option's value \(as '5\]'\)"),
    ("input='a normalize b'", r"ImageJ would switch the checkbox normalize on"),
    ("input=a[b normalize", r"ImageJ would not see the checkbox normalize"),
])
def test_options_that_imagej_would_read_differently_are_refused(ij, options, message):
    """Our reading of the options must be ImageJ's own; checked against ij.Macro itself too."""
    import jpype

    from ij_bridge.commands.registry import _import_builtin_commands, _imagej_value

    _import_builtin_commands()
    with pytest.raises(CommandError, match=message):
        check_options(get_command("StarDist 2D (torch)"), options)
    Macro = jpype.JClass("ij.Macro")
    for key in ("input", "low", "model"):
        java = Macro.getValue(options + " ", key, None)
        assert _imagej_value(options + " ", key) == (None if java is None else str(java))
    # the same words in their proper places pass
    check_options(get_command("StarDist 2D (torch)"), "low=1 input=[low=5] normalize")


def test_batch_refuses_a_path_that_would_shadow_another_value(tmp_path):
    from ij_bridge.batch import BatchError, macro_argument, plan_batch

    inp = tmp_path / "run output=1"
    inp.mkdir()
    imwrite(inp / "a.tif", np.zeros((4, 4), np.uint8))
    macro = tmp_path / "m.ijm"
    macro.write_text('print(getArgument());\n')
    with pytest.raises(BatchError, match=r"contains 'output=', which ImageJ's Macro.getValue would take"):
        plan_batch(macro, inp, tmp_path / "out", pattern="*.tif")
    text = macro_argument("/in/x].tif", "/out/x]/", "x]", "--flag [a]")
    assert parse_options(text) == [("input", "/in/x].tif"), ("output", "/out/x]/"), ("name", "x]"),
                                   ("arg", "--flag [a]")]
