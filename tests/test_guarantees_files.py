"""File guarantees (issue 12, data loss): atomic model saves on a real full disk, destinations
checked before long work on a real read-only mount, existing models and user folders never
replaced unasked, corrupt weights and newer formats refused with one clear line.

Faults are made for real: a small tmpfs fills up during a save, a tmpfs mounted read-only
refuses writes even to root (who ignores permission bits).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ij_bridge import model_files as mf
from ij_bridge.batch import BatchError, RECORD_NAME, _publish, existing_output, plan_batch, run_batch
from ij_bridge.cli import main as cli_main
from ij_bridge.io import imwrite
from ij_bridge.n2v import N2V, N2VConfig
from ij_bridge.stardist import StarDist2D, StarDistConfig
from ij_bridge.stardist.model import _MODELS_DIR
from ij_bridge.synthetic import synthetic_nuclei

BUNDLED = _MODELS_DIR / "stardist_nuclei2d"
REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))


# ----------------------------------------------------------------------------- helpers
@pytest.fixture()
def mount(tmp_path):
    """``mount(size_bytes=None, ro=False)``: a fresh tmpfs under tmp_path, unmounted afterwards."""
    mounted: list[Path] = []

    def make(size: int | None = None, ro: bool = False) -> Path:
        d = tmp_path / f"mnt{len(mounted)}"
        d.mkdir()
        opts = ",".join(([f"size={size}"] if size else []) + (["ro"] if ro else []))
        cmd = ["mount", "-t", "tmpfs"] + (["-o", opts] if opts else []) + ["tmpfs", str(d)]
        subprocess.run(cmd, check=True, capture_output=True)
        mounted.append(d)
        return d

    yield make
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], check=False, capture_output=True)


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _small_stardist(seed: int = 0) -> StarDist2D:
    torch.manual_seed(seed)
    cfg = StarDistConfig(n_rays=8, unet_depth=2, unet_n_filters=16, head_channels=32, patch_size=(32, 32),
                         seed=seed)
    return StarDist2D(cfg, device="cpu")


def _weights(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.net.state_dict().items()}


def _same_weights(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def _run(argv: list[str], capsys) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err, time.perf_counter() - t0


@pytest.fixture(scope="module")
def n2v_model():
    cfg = N2VConfig(axes="YX", patch_size=(16, 16), batch_size=2, epochs=1, steps_per_epoch=2,
                    unet_filters=4, neighborhood_radius=2, masked_fraction=0.02)
    m = N2V(cfg, device="cpu")
    m.train(np.random.default_rng(0).normal(100, 10, (40, 48)).astype(np.float32), show_progress=False)
    return m


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory) -> Path:
    """A folder with two small calibrated nuclei images (and their masks in ../masks)."""
    root = tmp_path_factory.mktemp("nuclei")
    for i in range(2):
        x, y = synthetic_nuclei((96, 96), n_objects=8, seed=10 + i)
        (root / "images").mkdir(exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        imwrite(root / "images" / f"n{i}.tif", x.astype(np.float32))
        imwrite(root / "masks" / f"n{i}.tif", y.astype(np.uint16))
    return root


# ----------------------------------------------------------------------- model_files units
def test_staged_failure_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with mf.staged(target, overwrite=True) as tmp:
                tmp.write_bytes(b"half")
                raise exc
        assert target.read_bytes() == b"old" and _listing(tmp_path) == ["a.bin"]
    with pytest.raises(mf.DestinationExistsError, match="pass --overwrite"):
        with mf.staged(target) as tmp:
            tmp.write_bytes(b"new")
    assert isinstance(mf.DestinationExistsError("x"), FileExistsError)
    with mf.staged(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _listing(tmp_path) == ["a.bin"]
    # a new folder created for the destination is removed again when the write fails
    with pytest.raises(RuntimeError):
        with mf.staged(tmp_path / "new" / "deep" / "b.bin") as tmp:
            tmp.write_bytes(b"x")
            raise RuntimeError("boom")
    assert _listing(tmp_path) == ["a.bin"]


def test_write_members_replaces_folders_whole_and_never_a_user_folder(tmp_path):
    m = tmp_path / "m"
    mf.write_members(m, {"config.json": "{}", "weights.pt": b"1", "extra.txt": "x"})
    mf.write_members(m, {"config.json": "{1}", "weights.pt": b"2"}, overwrite=True, markers=("config.json",))
    assert _listing(m) == ["config.json", "weights.pt"] and (m / "weights.pt").read_bytes() == b"2"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(mf.DestinationError, match="did not write.*never replaced"):
        mf.write_members(user, {"config.json": "{}"}, overwrite=True, markers=("config.json",))
    assert _listing(user) == ["notes.txt"]
    (tmp_path / "f").write_text("a file")
    with pytest.raises(mf.DestinationError, match="should be a folder"):
        mf.write_members(tmp_path / "f", {"config.json": "{}"}, overwrite=True)
    # zips: same members, same bytes (fixed entry times)
    z1 = mf.write_members(tmp_path / "a.zip", {"config.json": "{}", "weights.pt": b"w"}).read_bytes()
    time.sleep(1.1)
    z2 = mf.write_members(tmp_path / "a.zip", {"config.json": "{}", "weights.pt": b"w"}, overwrite=True)
    assert z2.read_bytes() == z1


def test_staged_group_replaces_one_inputs_outputs_as_a_set(tmp_path):
    outs = [tmp_path / "a_labels.tif", tmp_path / "a_rois.zip", tmp_path / "a_objects.csv"]
    for p in outs:
        p.write_text("old")
    (tmp_path / "keep.txt").write_text("other")
    with pytest.raises(mf.DestinationExistsError):
        with mf.staged_group(outs) as tmps:
            pass
    with pytest.raises(RuntimeError):
        with mf.staged_group(outs, overwrite=True) as tmps:
            tmps[0].write_text("new")
            raise RuntimeError("boom")
    assert all(p.read_text() == "old" for p in outs)
    with mf.staged_group(outs, overwrite=True) as tmps:
        tmps[0].write_text("new")
        tmps[2].write_text("new")  # no ROI file this time
    assert _listing(tmp_path) == ["a_labels.tif", "a_objects.csv", "keep.txt"]
    assert outs[0].read_text() == "new" == outs[2].read_text()


def test_format_version_messages_name_format_versions():
    with pytest.raises(mf.ModelFormatError, match=r"model format 7 is newer than this ij-bridge reads "
                                                  r"\(format 1, written by ij-bridge 9.0\); upgrade"):
        mf.check_format_version({"format_version": 7, "ij_bridge_version": "9.0"}, 1, where="m.zip")
    with pytest.raises(mf.ModelFormatError, match="invalid format_version"):
        mf.check_format_version({"format_version": "x"}, 1, where="m.zip")
    assert mf.check_format_version({"format_version": 1}, 1, where="m") == 1


# ------------------------------------------------------------------------- real full disk
@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_stardist_save_on_a_full_disk_keeps_the_old_model(mount, tmp_path, name):
    old, new = _small_stardist(0), _small_stardist(1)
    probe = old.save(tmp_path / name)
    size = sum(p.stat().st_size for p in ([probe] if probe.is_file() else probe.iterdir()))
    disk = mount(size=int(size * 1.5) + 8192)  # room for one model, not two
    target = disk / name
    old.save(target)
    before = _tree(disk)
    with pytest.raises(OSError, match="No space left|no space left") as info:
        new.save(target, overwrite=True)
    assert "unchanged" in str(info.value)
    assert _tree(disk) == before          # nothing half-written, no temporary left
    again = StarDist2D.load(target, device="cpu")
    assert _same_weights(again, old) and not _same_weights(again, new)


def test_first_saves_on_a_full_disk_leave_nothing(mount, n2v_model):
    disk = mount(size=64 * 1024)
    (disk / "filler").write_bytes(b"\0" * (48 * 1024))
    for target in (disk / "sd", disk / "sd.zip"):
        with pytest.raises(OSError, match="(?i)no space left"):
            _small_stardist().save(target)
    for target in (disk / "n2v", disk / "n2v.zip"):
        with pytest.raises(OSError, match="(?i)no space left"):
            n2v_model.save(target)
    assert _listing(disk) == ["filler"]   # no 0-byte zip, no half weights.pt


def test_n2v_save_on_a_full_disk_keeps_the_old_model(mount, tmp_path, n2v_model):
    size = n2v_model.save(tmp_path / "m.zip").stat().st_size
    disk = mount(size=int(size * 1.5) + 8192)
    target = n2v_model.save(disk / "m.zip")
    before = _tree(disk)
    n2v_model.net.state_dict()  # unchanged model: a second copy simply does not fit
    with pytest.raises(OSError, match="(?i)no space left"):
        n2v_model.save(target, overwrite=True)
    assert _tree(disk) == before
    N2V.load(target, device="cpu")


def test_models_are_replaced_only_when_asked(tmp_path, n2v_model):
    sd = _small_stardist(0)
    for model, path in ((sd, tmp_path / "sd.zip"), (n2v_model, tmp_path / "n2v")):
        model.save(path)
        before = _tree(tmp_path)
        with pytest.raises(mf.DestinationExistsError, match="exists; pass --overwrite"):
            model.save(path)
        assert _tree(tmp_path) == before
        model.save(path, overwrite=True)
        if path.suffix == ".zip":  # the same model gives the same bytes
            assert _tree(tmp_path) == before
    # an export replaces an existing package only when asked, too
    x, _ = synthetic_nuclei((64, 64), n_objects=4, seed=1)
    pkg = sd.export_bioimageio(tmp_path / "pkg.zip", x)
    with pytest.raises(mf.DestinationExistsError):
        sd.export_bioimageio(pkg, x)
    sd.export_bioimageio(pkg, x, overwrite=True)


# ------------------------------------------------------------------------- read-only places
def test_read_only_destinations_are_refused_before_work(mount, capsys, nuclei, n2v_model):
    ro = mount(ro=True)
    with pytest.raises(mf.DestinationError, match="read-only file system"):
        mf.check_destination(ro / "m.zip", kind="model")
    with pytest.raises(mf.DestinationError, match="read-only"):
        _small_stardist().save(ro / "m")
    # CLI: training never starts (50 000 steps would take hours)
    code, _, err, sec = _run(["stardist", "train", "--images", str(nuclei / "images"), "--masks",
                              str(nuclei / "masks"), "--model", str(ro / "m.zip"), "--epochs", "500",
                              "--steps", "100", "--quiet"], capsys)
    assert code == 2 and "read-only file system" in err and "Traceback" not in err and sec < 30
    assert len(err.strip().splitlines()) == 1
    code, _, err, sec = _run(["n2v", "train", str(nuclei / "images"), "--model", str(ro / "n2v"),
                              "--epochs", "500", "--quiet"], capsys)
    assert code == 2 and "read-only file system" in err and sec < 30
    # predict into a read-only folder: one line, not a PermissionError traceback
    code, _, err, _ = _run(["stardist", "predict", str(nuclei / "images"), "--output", str(ro / "seg"),
                            "--quiet"], capsys)
    assert code == 2 and "not writable" in err and "read-only" in err
    n2v_model.save(nuclei.parent / "n2v_for_ro", overwrite=True)
    code, _, err, _ = _run(["n2v", "predict", "--model", str(nuclei.parent / "n2v_for_ro"),
                            str(nuclei / "images"), "--output", str(ro), "--quiet"], capsys)
    assert code == 2 and "read-only" in err
    # batch into a read-only folder: refused before ImageJ starts
    macro = nuclei.parent / "noop.ijm"
    macro.write_text("// nothing\n")
    code, _, err, _ = _run(["batch", str(macro), "--input", str(nuclei / "images"), "--output",
                            str(ro / "out"), "--quiet"], capsys)
    assert code == 2 and "read-only" in err and "Traceback" not in err


# ----------------------------------------------------------------------- CLI destinations
def test_train_to_an_existing_model_is_refused_before_training(tmp_path, capsys, nuclei):
    existing = _small_stardist(3).save(tmp_path / "model.zip")
    before = existing.read_bytes()
    argv = ["stardist", "train", "--images", str(nuclei / "images"), "--masks", str(nuclei / "masks"),
            "--model", str(existing), "--epochs", "500", "--steps", "100", "--quiet"]
    code, _, err, sec = _run(argv, capsys)
    assert code == 2 and "exists; pass --overwrite" in err and sec < 30
    assert existing.read_bytes() == before
    # a file where a model folder is wanted, and a user's folder: also refused at once
    (tmp_path / "afile").write_text("x")
    code, _, err, sec = _run(argv[:6] + ["--model", str(tmp_path / "afile")] + argv[8:], capsys)
    assert code == 2 and "should be a folder" in err and sec < 30
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    code, _, err, _ = _run(argv[:6] + ["--model", str(user), "--overwrite"] + argv[8:], capsys)
    assert code == 2 and "did not write" in err and (user / "notes.txt").read_text() == "mine"
    n2v_existing = tmp_path / "n2v.zip"
    n2v_existing.write_bytes(b"a model")
    code, _, err, sec = _run(["n2v", "train", str(nuclei / "images"), "--model", str(n2v_existing),
                              "--epochs", "500", "--quiet"], capsys)
    assert code == 2 and "exists; pass --overwrite" in err and n2v_existing.read_bytes() == b"a model"


def test_train_overwrite_replaces_the_model(tmp_path, capsys, nuclei):
    existing = _small_stardist(3).save(tmp_path / "model")
    code, out, err, _ = _run(["stardist", "train", "--images", str(nuclei / "images"), "--masks",
                              str(nuclei / "masks"), "--model", str(existing), "--overwrite", "--epochs",
                              "1", "--steps", "1", "--patch-size", "64", "--rays", "8", "--quiet"], capsys)
    assert code == 0, err
    assert StarDist2D.load(existing).config.patch_size == (64, 64)
    assert _listing(tmp_path) == ["model", "model/config.json", "model/history.json", "model/weights.pt"]


def test_predict_output_rules(tmp_path, capsys, nuclei):
    imgs = nuclei / "images"
    before = _tree(imgs)
    code, _, err, _ = _run(["stardist", "predict", str(imgs), "--output", str(imgs), "--quiet"], capsys)
    assert code == 2 and "is the folder of input" in err
    code, _, err, _ = _run(["stardist", "predict", str(imgs / "n0.tif"), "--output", str(imgs / "n1.tif"),
                            "--quiet"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    assert _tree(imgs) == before
    out = tmp_path / "seg"
    code, stdout, err, _ = _run(["stardist", "predict", str(imgs / "n0.tif"), "--output", str(out),
                                 "--quiet"], capsys)
    assert code == 0, err
    assert _listing(out) == ["n0_labels.tif", "n0_objects.csv", "n0_rois.zip"]
    code, _, err, _ = _run(["stardist", "predict", str(imgs / "n0.tif"), "--output", str(out), "--quiet"],
                           capsys)
    assert code == 2 and "--overwrite" in err
    # a rerun that finds nothing replaces the whole set: no stale ROIs of the first run
    code, stdout, err, _ = _run(["stardist", "predict", str(imgs / "n0.tif"), "--output", str(out),
                                 "--prob", "0.99999", "--overwrite", "--quiet"], capsys)
    assert code == 0, err
    assert "0 object(s)" in stdout
    assert _listing(out) == ["n0_labels.tif", "n0_objects.csv"]


# ------------------------------------------------------------------ corrupt / newer models
def test_corrupt_stardist_weights_are_refused(tmp_path, capsys, nuclei):
    model = tmp_path / "nuclei"
    shutil.copytree(BUNDLED, model)
    raw = bytearray((model / "weights.pt").read_bytes())
    raw[20000:20000 + 65536] = bytes(65536)  # 64 KB zeroed: torch would still load this
    (model / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(mf.ChecksumError, match="weights.pt does not match the SHA-256"):
        StarDist2D.load(model)
    code, _, err, _ = _run(["stardist", "predict", "--model", str(model), str(nuclei / "images"),
                            "--output", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 2 and "weights.pt" in err and "corrupt" in err and not (tmp_path / "out").exists()
    # inside a zip the zip's own CRC already tells
    z = StarDist2D.load(BUNDLED).save(tmp_path / "m.zip")
    data = bytearray(z.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = bytes(4096)
    z.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        StarDist2D.load(z)


def test_the_bundled_model_records_and_passes_its_checksum():
    meta = json.loads((BUNDLED / "config.json").read_text())
    assert meta["weights_sha256"] == mf.sha256_file(BUNDLED / "weights.pt")
    StarDist2D.from_pretrained()


def test_models_of_a_newer_format_name_the_format(tmp_path, n2v_model):
    sd = shutil.copytree(BUNDLED, tmp_path / "sd")
    meta = json.loads((sd / "config.json").read_text())
    meta.update(format_version=2, ij_bridge_version="0.1.0")
    (sd / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"StarDist model format 2 is newer than this ij-bridge reads \(format 1"):
        StarDist2D.load(sd)
    n = n2v_model.save(tmp_path / "n2v")
    meta = json.loads((n / "n2v_model.json").read_text())
    meta["format_version"] = 5
    (n / "n2v_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"N2V model format 5 is newer than this ij-bridge reads \(format 1"):
        N2V.load(n)


# ------------------------------------------------------------------------------- batch
@pytest.fixture()
def batch_setup(tmp_path):
    inp = tmp_path / "data" / "raw"
    inp.mkdir(parents=True)
    for name in ("a.tif", "analysis.tif"):
        imwrite(inp / name, np.zeros((8, 8), np.uint16))
    macro = tmp_path / "m.ijm"
    macro.write_text('saveAs("Results", call("ij.Macro.getValue", getArgument(), "output", "") + "r.csv");\n')
    return inp, macro


def test_batch_refuses_a_users_folder_before_work(tmp_path, capsys, batch_setup):
    inp, macro = batch_setup
    out = tmp_path / "results"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("my notes")
    with pytest.raises(BatchError, match=r"did not write.*results/a.*notes.txt.*--into-existing"):
        run_batch(macro, inp, out, show_progress=False)
    code, _, err, _ = _run(["batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet"], capsys)
    assert code == 2 and "notes.txt" in err and "Traceback" not in err
    assert _listing(out) == ["a", "a/notes.txt"]  # nothing written, notes intact
    # a folder of ours where someone added a file is not ours alone any more
    rec = {"status": "ok", "outputs": ["r.csv"], "macro_sha256": "x", "input": "a.tif"}
    ours = out / "analysis"
    ours.mkdir()
    (ours / RECORD_NAME).write_text(json.dumps(rec))
    (ours / "r.csv").write_text("1")
    assert existing_output(ours) == ("ours", [])
    (ours / "mine.txt").write_text("added by hand")
    assert existing_output(ours) == ("foreign", ["mine.txt"])
    # asked for: planned, and still nothing deleted
    tasks = plan_batch(macro, inp, out, into_existing=True)
    assert [t.into_existing for t in tasks] == [True, True]


def test_batch_output_around_the_input_is_refused(tmp_path, capsys, batch_setup):
    inp, macro = batch_setup
    data = inp.parent
    (data / "analysis").mkdir()
    (data / "analysis" / "figure.svg").write_text("<svg/>")  # would be the folder of raw/analysis.tif
    before = _listing(data)
    with pytest.raises(BatchError, match="contains the input folder.*--into-existing"):
        plan_batch(macro, inp, data)
    code, _, err, _ = _run(["batch", str(macro), "--input", str(inp), "--output", str(data), "--quiet"],
                           capsys)
    assert code == 2 and "contains the input folder" in err
    assert _listing(data) == before
    # asked for: planned; analysis/ will be written into, never replaced
    tasks = plan_batch(macro, inp, data, into_existing=True)
    assert [Path(t.output_dir).name for t in tasks] == ["a", "analysis"]


def test_batch_summary_of_someone_else_is_not_replaced(tmp_path, batch_setup):
    inp, macro = batch_setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my,own,table\n1,2,3\n")
    with pytest.raises(BatchError, match="summary.csv.*not a summary written by ij-bridge"):
        plan_batch(macro, inp, out)
    (out / "summary.csv").write_text("input,status,error\n")  # ours (an older run)
    assert len(plan_batch(macro, inp, out)) == 2


def _staging(tmp_path: Path, files: dict[str, str], status: str = "ok") -> Path:
    s = tmp_path / ".ij-bridge-staging" / f"s{len(list(tmp_path.glob('.ij-bridge-staging/*')))}"
    s.mkdir(parents=True)
    for k, v in files.items():
        (s / k).write_text(v)
    (s / RECORD_NAME).write_text(json.dumps({"status": status, "outputs": sorted(files), "macro_sha256": "x",
                                             "input": "a.tif"}))
    return s


def test_publish_replaces_only_what_we_wrote(tmp_path):
    final = tmp_path / "a"
    _publish(_staging(tmp_path, {"a.tif": "1", "rois.zip": "1"}), final)
    assert _listing(final) == [RECORD_NAME, "a.tif", "rois.zip"]
    _publish(_staging(tmp_path, {"a.tif": "2"}), final)  # ours: replaced whole, stale rois.zip gone
    assert _listing(final) == [RECORD_NAME, "a.tif"] and (final / "a.tif").read_text() == "2"
    (final / "notes.txt").write_text("mine")
    s = _staging(tmp_path, {"a.tif": "3"})
    with pytest.raises(BatchError, match="notes.txt.*did not write"):
        _publish(s, final)
    assert (final / "notes.txt").read_text() == "mine" and (final / "a.tif").read_text() == "2"
    _publish(s, final, into_existing=True)  # asked: written into it, notes kept
    assert _listing(final) == [RECORD_NAME, "a.tif", "notes.txt"] and (final / "a.tif").read_text() == "3"
    _publish(_staging(tmp_path, {"b.csv": "4"}), final, into_existing=True)
    assert _listing(final) == [RECORD_NAME, "b.csv", "notes.txt"]  # our old a.tif removed, notes kept
    # an empty folder someone made is written into, never removed
    empty = tmp_path / "e"
    empty.mkdir()
    ino = empty.stat().st_ino
    _publish(_staging(tmp_path, {"x.tif": "5"}), empty)
    assert empty.stat().st_ino == ino and _listing(empty) == [RECORD_NAME, "x.tif"]
    # a sub-folder of the user's where an output of that name would go: refused
    (final / "sub.tif").mkdir()
    (final / "sub.tif" / "keep").write_text("k")
    with pytest.raises(BatchError, match="folder that ij-bridge did not write"):
        _publish(_staging(tmp_path, {"sub.tif": "6"}), final, into_existing=True)
    assert (final / "sub.tif" / "keep").read_text() == "k"


@pytest.mark.imagej
def test_batch_into_existing_keeps_the_users_files(tmp_path, batch_setup):
    """A real batch run (ImageJ in the CLI process) writing into a folder with a user's file."""
    inp, macro = batch_setup
    out = tmp_path / "results"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("my notes")
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "notes.txt" in r.stderr and _listing(out) == ["a", "a/notes.txt"]
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out), "--quiet",
                        "--into-existing"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (out / "a" / "notes.txt").read_text() == "my notes"
    assert {RECORD_NAME, "notes.txt"} <= set(os.listdir(out / "a"))
    assert json.loads((out / "a" / RECORD_NAME).read_text())["status"] == "ok"
    assert existing_output(out / "analysis")[0] == "ours"


@pytest.mark.imagej
def test_imagej_train_commands_check_the_model_place_first(ij, mount, tmp_path, nuclei):
    """The ImageJ commands replace a model saved before (ImageJ's way), but refuse a read-only
    place or a folder ij-bridge did not write at once, before any training step."""
    from ij_bridge import to_imageplus
    from ij_bridge.commands import install_commands, run_macro

    install_commands()
    run_macro('close("*");')
    to_imageplus(np.random.default_rng(0).normal(100, 10, (64, 64)).astype(np.float32), "noisy").show()
    ro = mount(ro=True)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    try:
        for model, why in ((ro / "m.zip", "read-only"), (user, "did not write")):
            t0 = time.perf_counter()
            r = run_macro(f'run("N2V Train (torch)", "training=noisy model=[{model}] epochs=500 steps=100 '
                          'batch=2 patch=32 radius=5 variant=N2V mode=2D");')
            assert not r.ok and why in r.error and time.perf_counter() - t0 < 30
            t0 = time.perf_counter()
            r = run_macro(f'run("StarDist Train (torch)", "images=[{nuclei / "images"}] '
                          f'masks=[{nuclei / "masks"}] model=[{model}] epochs=500 steps=100 patch=64 rays=8");')
            assert not r.ok and why in r.error and time.perf_counter() - t0 < 30
        assert _listing(user) == ["notes.txt"]
    finally:
        run_macro('close("*");')
