"""The dependency arrows of README's "Dependencies point one way", read from the sources.

``cli/``, ``commands/``, ``batch/``, ``demo`` and ``fiji_macros`` are the front ends;
they may use everything below them. ``workflows/`` sits under the front ends and
over the cores; ``imagej/`` serves ``commands/`` (and the front ends) and itself uses
only cores such as ``io`` and ``layout``. Everything else is a core: it imports
neither Java nor ImageJ nor any layer above it, nor names from the package face
``ij_bridge/__init__.py``.

Every ``import`` counts, also the ones inside functions. No Java is needed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ij_bridge"

FRONT_ENDS = {"cli", "commands", "batch", "demo", "fiji_macros"}
WORKFLOWS = "workflows"
IMAGEJ = "imagej"
NOT_CORES = FRONT_ENDS | {WORKFLOWS, IMAGEJ, "__main__"}
JAVA = {"jpype", "scyjava", "imagej"}  # imagej = PyImageJ


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in module ``name``.

    ``from X import y`` gives ``X.y`` when that is one of our modules, else ``X``
    (then ``y`` is a name defined in ``X``); relative imports are resolved.
    """
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.append((full if full in MODULES else module, node.lineno))
    return found


def _part(module: str) -> str:
    """The layer a module of ours is in: ``'face'`` for ``ij_bridge`` itself, else its first part."""
    parts = module.split(".")
    return "face" if len(parts) == 1 else parts[1]


def _is_core(name: str) -> bool:
    return name != "ij_bridge" and _part(name) not in NOT_CORES


def _violations(names, forbidden_parts: set[str], forbidden_external: set[str] = frozenset()) -> list[str]:
    bad = []
    for name in names:
        for target, line in _imports(name):
            top = target.split(".")[0]
            if top == "ij_bridge" and _part(target) in forbidden_parts:
                bad.append(f"{MODULES[name].relative_to(SRC.parent)}:{line} imports {target}")
            elif top in forbidden_external:
                bad.append(f"{MODULES[name].relative_to(SRC.parent)}:{line} imports {target}")
    return bad


CORES = sorted(n for n in MODULES if _is_core(n))
WORKFLOW_MODULES = sorted(n for n in MODULES if n != "ij_bridge" and _part(n) == WORKFLOWS)
IMAGEJ_MODULES = sorted(n for n in MODULES if n != "ij_bridge" and _part(n) == IMAGEJ)


def test_the_parser_sees_the_arrows_that_exist():
    # the checks below can only fail if the parser finds imports, relative ones included
    assert {"ij_bridge.stardist.model", "ij_bridge.n2v.model", "ij_bridge.layout", "ij_bridge.io"} <= set(CORES)
    assert not set(CORES) & {"ij_bridge.workflows", "ij_bridge.imagej.images", "ij_bridge.cli", "ij_bridge.demo"}
    targets = {t for t, _ in _imports("ij_bridge.commands.stardist")}
    assert any(t.startswith("ij_bridge.workflows") for t in targets), targets
    assert any(t.startswith("ij_bridge.imagej") for t in targets), targets
    assert any(t.startswith("ij_bridge.layout") for t in (t for t, _ in _imports("ij_bridge.io")))
    assert _violations(["ij_bridge.commands.stardist"], {WORKFLOWS}) != []


def test_cores_import_no_layer_above_them_and_no_java():
    bad = _violations(CORES, NOT_CORES | {"face"}, JAVA)
    assert not bad, "cores must not import front ends, workflows, imagej/, Java or the package face:\n" + "\n".join(bad)


def test_cores_take_only_submodules_from_the_package_face():
    # `from ij_bridge import cancel` is a submodule; `from ij_bridge import to_imageplus` is the face
    bad = []
    for name in CORES:
        for target, line in _imports(name):
            if target == "ij_bridge":
                bad.append(f"{MODULES[name].relative_to(SRC.parent)}:{line}")
    assert not bad, "cores import names from ij_bridge/__init__.py (use the submodule):\n" + "\n".join(bad)


def test_workflows_import_no_java_no_imagej_no_front_end_no_argparse():
    assert WORKFLOW_MODULES, "src/ij_bridge/workflows/ is missing"
    bad = _violations(WORKFLOW_MODULES, FRONT_ENDS | {IMAGEJ, "face"}, JAVA | {"argparse"})
    bad += [f"{MODULES[n].relative_to(SRC.parent)} uses GenericDialog" for n in WORKFLOW_MODULES
            if "GenericDialog(" in MODULES[n].read_text(encoding="utf-8")]
    assert not bad, "\n".join(bad)


def test_imagej_layer_imports_no_front_end_and_no_workflows():
    assert IMAGEJ_MODULES
    bad = _violations(IMAGEJ_MODULES, FRONT_ENDS | {WORKFLOWS, "face"})
    assert not bad, "imagej/ serves commands/; it must not import them:\n" + "\n".join(bad)


def test_commands_do_not_import_the_cli():
    commands = [n for n in MODULES if n != "ij_bridge" and _part(n) == "commands"]
    assert not _violations(commands, {"cli"})


@pytest.mark.timeout(300)
def test_importing_every_core_and_workflow_loads_no_java_and_no_imagej_layer():
    code = textwrap.dedent(f"""
        import importlib, sys
        for name in {CORES + WORKFLOW_MODULES!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jpype", "scyjava", "imagej")
                        or m.startswith(("ij_bridge.imagej", "ij_bridge.commands", "ij_bridge.cli",
                                         "ij_bridge.batch", "ij_bridge.demo")))
        print(loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout
