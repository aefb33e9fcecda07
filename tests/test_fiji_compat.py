"""Recorded Fiji StarDist plugin macros run unchanged on the torch StarDist."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ij_bridge.commands.fiji_compat import parse_args, stardist_options
from ij_bridge.commands.registry import CommandError

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))
BUNDLED = REPO / "src" / "ij_bridge" / "models" / "stardist_nuclei2d"

# the line the StarDist Fiji plugin records (CommandFromMacro.record), verbatim but for the title
RECORDED_ARGS = ("'input':'{title}', 'modelChoice':'{model}', 'normalizeInput':'true', "
                 "'percentileBottom':'1.0', 'percentileTop':'99.8', 'probThresh':'0.5', 'nmsThresh':'0.4', "
                 "'outputType':'{output}', 'nTiles':'1', 'excludeBoundary':'2', 'roiPosition':'Automatic', "
                 "'verbose':'false', 'showCsbdeepProgress':'false', 'showProbAndDist':'false'{extra}")


def recorded_line(title: str, model: str = "Versatile (fluorescent nuclei)", output: str = "Both",
                  extra: str = "") -> str:
    args = RECORDED_ARGS.format(title=title, model=model, output=output, extra=extra)
    return (f'run("Command From Macro", "command=[de.csbdresden.stardist.StarDist2D], '
            f'args=[{args}], process=[false]");')


# --------------------------------------------------------------------------- parsing (no Java)
def test_parse_recorded_args():
    line = recorded_line("blobs.gif")
    args = parse_args(line.split("args=[", 1)[1].split("], process", 1)[0])
    assert args["input"] == "blobs.gif"
    assert args["modelChoice"] == "Versatile (fluorescent nuclei)"
    assert args["percentileTop"] == "99.8" and args["showProbAndDist"] == "false"
    assert len(args) == 14


def test_parse_escapes_quotes_and_bare_values():
    # the recorder doubles backslashes; after the macro string is read they are JSON escapes
    text = "'modelFile':'C:\\\\models\\\\it\\'s.zip', \"nTiles\": 4, 'x':'\\u00b5m'"
    assert text == r"""'modelFile':'C:\\models\\it\'s.zip', "nTiles": 4, 'x':'\u00b5m'"""
    args = parse_args(text)
    assert args == {"modelFile": "C:\\models\\it's.zip", "nTiles": "4", "x": "µm"}
    with pytest.raises(CommandError, match="unterminated"):
        parse_args("'input':'blobs")
    with pytest.raises(CommandError, match="expected ':'"):
        parse_args("'input' 'blobs'")


def test_every_parameter_maps_one_to_one():
    args = parse_args(RECORDED_ARGS.format(title="cells", model="Versatile (fluorescent nuclei)",
                                           output="ROI Manager", extra=""))
    args.update(percentileBottom="2.5", percentileTop="99.5", probThresh="0.61", nmsThresh="0.25",
                nTiles="4", excludeBoundary="5", roiPosition="Hyperstack", normalizeInput="false")
    options, notes = stardist_options(args)
    assert options == ("input=[cells] model=[stardist_nuclei2d] low=2.5 high=99.5 probability=0.61 "
                       "overlap=0.25 output=[ROI Manager] tiles=2 exclude=5 position=[Hyperstack]")
    assert any("not the original StarDist weights" in n for n in notes)
    args["normalizeInput"] = "true"
    assert " normalize " in stardist_options(args)[0]


def test_model_choices(tmp_path):
    base = parse_args(RECORDED_ARGS.format(title="a", model="x", output="Both", extra=""))
    for choice, message in [("Versatile (H&E nuclei)", "does not have"),
                            ("DSB 2018 (from StarDist 2D paper)", "does not have"),
                            ("Model (.zip) from URL", "does not download"),
                            ("My model", "not a StarDist model choice")]:
        with pytest.raises(CommandError, match=message):
            stardist_options({**base, "modelChoice": choice})
    with pytest.raises(CommandError, match="needs 'modelFile'"):
        stardist_options({**base, "modelChoice": "Model (.zip) from File"})
    with pytest.raises(CommandError, match="does not exist"):
        stardist_options({**base, "modelChoice": "Model (.zip) from File", "modelFile": str(tmp_path / "no.zip")})
    tf = tmp_path / "tf_model.zip"
    with zipfile.ZipFile(tf, "w") as zf:
        zf.writestr("saved_model.pb", b"x")
        zf.writestr("variables/variables.index", b"x")
    # the plugin's TF SavedModel zips are accepted (read without TensorFlow when the model loads)
    options, _ = stardist_options({**base, "modelChoice": "Model (.zip) from File", "modelFile": str(tf)})
    assert f"model=[{tf}]" in options
    ours = tmp_path / "ours.zip"
    with zipfile.ZipFile(ours, "w") as zf:
        for f in BUNDLED.iterdir():
            zf.write(f, f.name)
    options, notes = stardist_options({**base, "modelChoice": "Model (.zip) from File", "modelFile": str(ours)})
    assert f"model=[{ours}]" in options and not any("original" in n for n in notes)
    with pytest.raises(CommandError, match="'outputType'"):
        stardist_options({**base, "modelChoice": "Versatile (fluorescent nuclei)", "outputType": "Polygons"})


# --------------------------------------------------------------------------- through ImageJ
@pytest.mark.imagej
def test_recorded_line_runs_through_ij_bridge_macro(shared_data, tmp_path):
    image = shared_data / "nuclei2d" / "train_left_img.tif"
    macro = tmp_path / "recorded.ijm"
    macro.write_text(
        f'open("{image}");\n'
        + recorded_line("train_left_img.tif") + "\n"
        + 'print("rois=" + roiManager("count"));\n'
          'selectWindow("Label Image");\n'
          'getStatistics(area, mean, min, max);\n'
          'getPixelSize(unit, pw, ph);\n'
          'print("labels=" + max + " bits=" + bitDepth() + " size=" + getWidth() + "x" + getHeight());\n'
    )
    r = subprocess.run([CLI, "macro", str(macro)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr + r.stdout
    lines = dict(line.split("=", 1) for line in r.stdout.splitlines() if line.startswith(("rois=", "labels=")))
    n = int(lines["rois"])
    assert 50 <= n <= 90  # 73 nuclei annotated in this image
    assert lines["labels"] == f"{n} bits=16 size=256x512"
    assert "not the original StarDist weights" in r.stdout


@pytest.mark.imagej
def test_model_from_file_and_errors(clean_imagej, shared_data, tmp_path):
    from ij_bridge.commands import run_macro

    image = shared_data / "nuclei2d" / "train_left_img.tif"
    ours = tmp_path / "model.zip"
    with zipfile.ZipFile(ours, "w") as zf:
        for f in BUNDLED.iterdir():
            zf.write(f, f.name)
    extra = f", 'modelFile':'{ours}'"
    line = recorded_line("train_left_img.tif", model="Model (.zip) from File", output="ROI Manager",
                         extra=extra).replace("'showProbAndDist':'false'", "'showProbAndDist':'true'")
    res = run_macro(f'open("{image}");\n' + line
                    + '\nprint("rois=" + roiManager("count") + " images=" + nImages);'
                    + '\nselectWindow("Distance Image"); print("rays=" + nSlices);')
    assert res.ok, res.error
    n = int(res.output.split("rois=")[1].split()[0])
    assert 50 <= n <= 90
    assert "images=3" in res.output  # ROI Manager only: no label image; probability and distances
    assert "rays=32" in res.output

    res = run_macro(f'open("{image}");\n' + recorded_line("train_left_img.tif", model="Versatile (H&E nuclei)")
                    + '\nprint("not reached");')
    assert not res.ok and "Versatile (H&E nuclei)" in res.error and "not reached" not in res.output
    res = run_macro(recorded_line("no such image"))
    assert not res.ok and "no open image" in res.error
