"""One copy of each small utility (issue 11 item 8), and the one model-file reader (item 5)."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ij_bridge
from ij_bridge import device, metrics, model_files, progress, tiles
from ij_bridge.measure import regionprops_table
from ij_bridge.stardist import StarDist2D, StarDistConfig
from ij_bridge.stardist.geometry import check_label_image as sd_check
from ij_bridge.synthetic import synthetic_nuclei

SRC = Path(ij_bridge.__file__).parent


def test_one_label_check_refuses_boolean_masks_everywhere():
    mask = np.zeros((48, 48), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(ValueError, match="boolean.*label each object"):
        metrics.matching(mask, mask)
    with pytest.raises(ValueError, match="boolean.*label each object"):
        regionprops_table(mask)
    m = StarDist2D(StarDistConfig(n_rays=8, patch_size=(32, 32), unet_depth=1, unet_n_filters=4,
                                  epochs=1, steps_per_epoch=1), device="cpu")
    with pytest.raises(ValueError, match="boolean.*label each object"):
        m.train([np.zeros((48, 48), np.float32)], [mask], show_progress=False)
    lbl = mask.astype(np.uint16) * 3
    assert metrics.check_label_image(lbl).dtype == np.uint16      # integers unchanged
    assert sd_check(lbl).dtype == np.int32                          # the geometry's int32
    assert sd_check(lbl.astype(np.float32)).dtype == np.int32       # whole floats accepted
    with pytest.raises(ValueError, match="non-integer"):
        sd_check(lbl + np.float32(0.5))


def test_one_progress_type_and_one_device_rule():
    from ij_bridge.imagej import rois
    from ij_bridge.n2v import model as n2v_model
    from ij_bridge.stardist import model as sd_model

    assert n2v_model.Progress is sd_model.Progress is rois.Progress is metrics.ProgressCallback \
        is progress.Progress
    assert n2v_model._memory_budget is sd_model._memory_budget is device.memory_budget
    assert device.choose_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.memory_budget(torch.device("cpu"))
    assert 0 < cpu <= device.CPU_CAP
    assert cpu <= device.CPU_FRACTION * device.available_memory() + 1


def test_auto_tiles_counts_the_halo():
    # 512 x 512 at 4 bytes/pixel = 1 MiB; a budget of 0.3 MiB: 2 x 2 tiles of 256 x 256 ...
    budget = 0.3 * 2**20
    assert tiles.auto_n_tiles((512, 512), 4.0, budget) == (2, 2)
    # ... but with a 32-pixel halo on each side a read region of 320 x 320 is too large
    n = tiles.auto_n_tiles((512, 512), 4.0, budget, halo=32)
    assert np.prod(n) > 4
    read = [min(512, -(-512 // k) + 64) for k in n]
    assert read[0] * read[1] * 4.0 <= budget
    # an axis is not split below min_tile
    assert tiles.auto_n_tiles((40, 40), 4.0, 1.0, min_tile=16) == (3, 3)


def test_cores_take_the_version_from_version_module_not_the_package_face():
    assert ij_bridge.__version__ == ij_bridge._version.__version__
    cores = [p for d in ("n2v", "stardist", "nets") for p in (SRC / d).rglob("*.py")]
    cores += [SRC / f for f in ("metrics.py", "measure.py", "model_files.py", "bioimageio.py", "tiles.py",
                                "device.py", "progress.py", "layout.py")]
    offenders = []
    for path in cores:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0 and not node.module:
                if any(a.name == "__version__" for a in node.names):
                    offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_one_reader_for_model_folders_and_zips(tmp_path):
    m = StarDist2D(StarDistConfig(n_rays=8, unet_depth=1, unet_n_filters=4), device="cpu")
    folder = m.save(tmp_path / "m")
    z = m.save(tmp_path / "m.zip")
    a = model_files.read_members(folder, ("config.json", "weights.pt", "nope"), what="StarDist model")
    b = model_files.read_members(z, ("config.json", "weights.pt", "nope"), what="StarDist model")
    assert set(a) == set(b) == {"config.json", "weights.pt"} and a == b
    with pytest.raises(FileNotFoundError, match="StarDist model .* is incomplete: nope is missing"):
        model_files.require_member(a, "nope", where=folder, what="StarDist model")
    bad = tmp_path / "cut.zip"
    bad.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a N2V model folder or a valid .zip"):
        model_files.read_members(bad, ("config.json",), what="N2V model")
    with pytest.raises(FileNotFoundError, match="not found"):
        model_files.read_members(tmp_path / "absent", ("config.json",))
    # a damaged member of an intact archive: one clear line
    flipped = tmp_path / "flip.zip"
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("weights.pt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    raw[start:start + 8] = b"\x00" * 8
    flipped.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="cannot read weights.pt from the zip.*corrupt"):
        model_files.read_members(flipped, ("weights.pt",))


def test_bioimageio_export_is_reached_from_model_files(tmp_path):
    with pytest.raises(TypeError, match="StarDist2D/StarDist3D or N2V"):
        model_files.export_bioimageio(object(), tmp_path / "x.zip", np.zeros((8, 8)))
    x, _ = synthetic_nuclei((64, 64), n_objects=4, seed=1)
    m = StarDist2D(StarDistConfig(n_rays=8, unet_depth=1, unet_n_filters=4), device="cpu")
    out = model_files.export_bioimageio(m, tmp_path / "pkg.zip", x, name="tiny model")
    with zipfile.ZipFile(out) as zf:
        assert "rdf.yaml" in zf.namelist()
