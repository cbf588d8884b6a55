"""The package's shape, as docs/architecture.md draws it: imports only run downward through the layers,
podinfra/ keeps at most 10 top-level modules, and no module of podinfra/ or benchmarks/ passes 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "podinfra"
# Bottom to top; a module may import from its own layer and those below it.
LAYERS = [
    {"errors", "versions", "table", "tomlpath", "render"},
    {"images"},
    {"data"},
    {"node"},
    {"check", "suite"},
    {"deploys"},
    {"lab"},
    {"cli", "demo", "facts", "operations", "__init__"},
]
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """A module's layer unit: its folder under podinfra/, or its own name at the top."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_units(path: Path) -> set[str]:
    """The podinfra units `path` imports (at any depth of its code, lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "podinfra" and len(parts) > 1 and parts[1] in LEVEL:
                found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_layer():
    loose = sorted({unit_of(path) for path in modules()} - set(LEVEL))
    assert not loose, f"put {loose} in a layer of LAYERS here and in docs/architecture.md"


def test_imports_only_run_downward():
    upward = [
        f"{path.relative_to(ROOT)} imports podinfra.{unit}"
        for path in modules()
        for unit in imported_units(path)
        if LEVEL[unit] > LEVEL[unit_of(path)]
    ]
    assert not upward, upward


def test_the_lab_is_imported_only_by_the_commands_and_itself():
    users = {unit_of(path) for path in modules() if "lab" in imported_units(path)}
    assert users <= {"lab", "cli", "demo"}, users


def test_at_most_ten_top_level_modules():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top


def test_no_module_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in [*modules(), *(ROOT / "benchmarks").glob("*.py")]
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


def test_the_architecture_document_names_every_layer():
    text = (ROOT / "docs" / "architecture.md").read_text()
    folders = {unit for unit in LEVEL if (PACKAGE / unit).is_dir()}
    assert all(f"{folder}/" in text for folder in folders), sorted(f for f in folders if f"{f}/" not in text)
