"""The StarDist Fiji plugin's own models, found in a Fiji installation or a folder.

The plugin (``StarDist_-<version>.jar``, from the StarDist update site) carries
three 2D models as TF SavedModel zips among its resources, each with the
thresholds and tiling the plugin uses for it (``StarDist2DModel.java``):

=====================================  ===================================  ===========  =====
plugin name (``modelChoice``)          resource in the jar                  probability  NMS
=====================================  ===================================  ===========  =====
Versatile (fluorescent nuclei)         models/2D/dsb2018_heavy_augment.zip  0.479071     0.3
Versatile (H&E nuclei)                 models/2D/he_heavy_augment.zip       0.692478     0.3
DSB 2018 (from StarDist 2D paper)      models/2D/dsb2018_paper.zip          0.417819     0.5
=====================================  ===================================  ===========  =====

The same models are published for Python as ``2D_versatile_fluo``,
``2D_versatile_he`` and ``2D_paper_dsb2018``.

Where to look, in this order:

1. a models folder (``models=`` argument or ``IJ_BRIDGE_MODELS``) holding, for
   each model, any of: ``dsb2018_heavy_augment.zip`` (the resource's file name),
   ``2D_versatile_fluo.zip`` / ``2D_versatile_fluo/`` (the Python name; a
   SavedModel zip, the original's model folder or an ij-bridge model),
   or a file named like the plugin's choice (``Versatile (fluorescent nuclei).zip``);
2. a Fiji installation (``fiji=`` argument or ``IJ_BRIDGE_FIJI``): the
   StarDist plugin's jar under ``Fiji.app/plugins`` or ``Fiji.app/jars``
   (newest version first).

Nothing here imports Java; the jar is read as the zip it is.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FIJI_MODELS", "FijiModel", "ResolvedModel", "ENV_FIJI", "ENV_MODELS",
           "is_fiji_model_name", "resolve_fiji_model", "fallback_note", "not_found_message",
           "load_fiji_model", "find_plugin_jars", "place_kwargs"]

ENV_FIJI = "IJ_BRIDGE_FIJI"
ENV_MODELS = "IJ_BRIDGE_MODELS"


@dataclass(frozen=True)
class FijiModel:
    """One of the plugin's built-in models and the settings the plugin uses for it."""

    name: str              # the plugin's modelChoice
    resource: str          # path inside the plugin's jar
    python_name: str       # the original package's registered name
    prob_thresh: float
    nms_thresh: float
    size_div_by: int       # the plugin's blockMultiple
    tile_overlap: int      # the plugin's overlap


FIJI_MODELS: dict[str, FijiModel] = {m.name: m for m in (
    FijiModel("Versatile (fluorescent nuclei)", "models/2D/dsb2018_heavy_augment.zip",
              "2D_versatile_fluo", 0.479071, 0.3, 16, 96),
    FijiModel("Versatile (H&E nuclei)", "models/2D/he_heavy_augment.zip",
              "2D_versatile_he", 0.692478, 0.3, 16, 96),
    FijiModel("DSB 2018 (from StarDist 2D paper)", "models/2D/dsb2018_paper.zip",
              "2D_paper_dsb2018", 0.417819, 0.5, 8, 48),
)}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a Fiji model name was found.

    Attributes
    ----------
    model : FijiModel
        The plugin's model and its thresholds.
    location : str
        A path: a file or folder, or ``<jar>!/<resource>`` for a model inside
        the plugin's jar (the notation of Java's jar URLs).
    origin : str
        ``"models folder"`` or ``"Fiji"``.
    """

    model: FijiModel
    location: str
    origin: str

    @property
    def is_savedmodel(self) -> bool:
        """The location is a TF SavedModel (the plugin's own format)."""
        if "!/" in self.location:
            return True
        from .savedmodel import is_savedmodel

        return is_savedmodel(self.location)

    def stamp(self) -> tuple:
        """A cache key that changes when the file changes."""
        p = Path(self.location.split("!/")[0])
        try:
            st = p.stat()
            return (self.location, st.st_mtime_ns, st.st_size)
        except OSError:
            return (self.location, None, None)


def is_fiji_model_name(name: str) -> bool:
    """Whether ``name`` is one of the plugin's model choices (or their Python names)."""
    return _lookup(name) is not None


def _lookup(name: str) -> FijiModel | None:
    name = name.strip()
    if name in FIJI_MODELS:
        return FIJI_MODELS[name]
    for m in FIJI_MODELS.values():
        if name == m.python_name:
            return m
    return None


def _version_key(path: Path) -> tuple:
    nums = re.findall(r"\d+", path.stem)
    return tuple(int(n) for n in nums)


def find_plugin_jars(fiji: str | Path) -> list[Path]:
    """The StarDist plugin jars of a Fiji installation, newest version first."""
    root = Path(fiji).expanduser()
    jars: list[Path] = []
    for sub in ("plugins", "jars"):
        d = root / sub
        if d.is_dir():
            jars += [p for p in d.rglob("*.jar") if p.name.lower().startswith("stardist")]
    return sorted(jars, key=_version_key, reverse=True)


def _in_folder(folder: Path, m: FijiModel) -> Path | None:
    stem = _file_name(m.resource)
    for cand in (folder / stem, folder / f"{m.python_name}.zip", folder / m.python_name,
                 folder / f"{m.name}.zip", folder / m.name):
        if cand.exists():
            return cand
    return None


def _file_name(resource: str) -> str:
    return resource.rsplit("/", 1)[-1]


def resolve_fiji_model(name: str, fiji: str | Path | None = None,
                       models: str | Path | None = None) -> ResolvedModel | None:
    """Find the plugin's model ``name`` in a models folder or a Fiji installation.

    Parameters
    ----------
    name : str
        A ``modelChoice`` of the plugin (``"Versatile (fluorescent nuclei)"``,
        ...) or its Python name (``"2D_versatile_fluo"``, ...).
    fiji : path, optional
        ``Fiji.app``; default ``$IJ_BRIDGE_FIJI``.
    models : path, optional
        A folder of models; default ``$IJ_BRIDGE_MODELS``.

    Returns
    -------
    ResolvedModel or None
        ``None`` if ``name`` is not a plugin model, or it was not found.

    Raises
    ------
    FileNotFoundError
        A named Fiji installation or models folder does not exist (a typo is
        never silently replaced by the bundled model).
    """
    m = _lookup(name)
    if m is None:
        return None
    models = models if models is not None else (os.environ.get(ENV_MODELS) or None)
    fiji = fiji if fiji is not None else (os.environ.get(ENV_FIJI) or None)
    if models is not None:
        folder = Path(models).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"models folder {folder} (from {ENV_MODELS} or models=) does "
                                    "not exist: give the folder that holds the StarDist models")
        found = _in_folder(folder, m)
        if found is not None:
            return ResolvedModel(m, str(found), "models folder")
    if fiji is not None:
        root = Path(fiji).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"Fiji installation {root} (from {ENV_FIJI} or fiji=) does "
                                    "not exist: give the Fiji.app folder")
        for jar in find_plugin_jars(root):
            try:
                with zipfile.ZipFile(jar) as zf:
                    if m.resource in zf.namelist():
                        return ResolvedModel(m, f"{jar}!/{m.resource}", "Fiji")
            except (zipfile.BadZipFile, OSError):
                continue
    return None


def _not_found(name: str, fiji, models) -> tuple[str, str]:
    where = []
    fiji = fiji if fiji is not None else os.environ.get(ENV_FIJI)
    models = models if models is not None else os.environ.get(ENV_MODELS)
    if fiji:
        where.append(f"no StarDist plugin jar with it in {fiji}")
    if models:
        where.append(f"not in the models folder {models}")
    why = f"'{name}' is the StarDist Fiji plugin's model, which was not found" + \
        (f" ({'; '.join(where)})" if where else "")
    m = _lookup(name)
    file = _file_name(m.resource) if m is not None else f"{name}.zip"
    how = (f"to run the real model, set {ENV_FIJI}=/path/to/Fiji.app (with the StarDist update "
           f"site installed) or {ENV_MODELS}=/path/to/folder holding {file} before starting, "
           "or give fiji=[/path/to/Fiji.app]")
    return why, how


def fallback_note(name: str, fallback: str, fiji: str | Path | None = None,
                  models: str | Path | None = None) -> str:
    """The Log line for a plugin model name that runs the bundled model instead."""
    why, how = _not_found(name, fiji, models)
    return (f"{why}; running IJ Bridge's bundled model {fallback} instead - results will differ "
            f"from Fiji's. To {how[3:]}")


def not_found_message(name: str, fiji: str | Path | None = None,
                      models: str | Path | None = None) -> str:
    """The error for a plugin model name that has no stand-in (H&E, DSB 2018)."""
    why, how = _not_found(name, fiji, models)
    return f"{why}, and IJ Bridge has no stand-in for it: {how}"


def load_fiji_model(name: str, fiji: str | Path | None = None, models: str | Path | None = None,
                    device=None):
    """Load the plugin's model ``name`` (see :func:`resolve_fiji_model` for where it is looked for).

    A SavedModel zip gets the plugin's thresholds for that model; an original
    model folder or an ij-bridge model keeps its own.

    Raises
    ------
    FileNotFoundError
        Not found (the message says how to point at the models), or a named
        place does not exist.
    ValueError
        The file found cannot be read as a StarDist model.
    """
    from .model import StarDistBase
    from .savedmodel import load_stardist_savedmodel

    ref = resolve_fiji_model(name, fiji=fiji, models=models)
    if ref is None:
        raise FileNotFoundError(not_found_message(name, fiji=fiji, models=models))
    if ref.is_savedmodel:
        model = load_stardist_savedmodel(ref.location, device=device, fiji_model=ref.model)
    else:
        model = StarDistBase.load(ref.location, device=device)
    model.source = f"'{ref.model.name}' ({ref.location})"
    return model


def place_kwargs(path: str | Path | None) -> dict[str, Path]:
    """``{"fiji": path}`` for a Fiji installation (it has ``jars/`` or ``plugins/``), else
    ``{"models": path}`` (a folder of models); ``{}`` for nothing given."""
    if path is None or not str(path).strip():
        return {}
    p = Path(str(path).strip()).expanduser()
    return {"fiji": p} if (p / "jars").is_dir() or (p / "plugins").is_dir() else {"models": p}
