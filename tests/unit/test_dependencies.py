"""Every distribution podinfra's package imports is declared in pyproject.toml, not left to arrive
through another one's dependencies (pydantic came through pyinfra, grpc through the CRI API package)."""

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import name -> distribution name, where they differ
DISTRIBUTION = {
    "cri_api": "container-runtime-interface-api",
    "grpc": "grpcio",
    "testinfra": "pytest-testinfra",
    "xdist": "pytest-xdist",
}


def imported_top_level() -> set[str]:
    names = set()
    for path in (ROOT / "podinfra").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"podinfra"}


def test_every_imported_distribution_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # xdist is imported only inside the suite's pytest-xdist hook, which runs only where the bench extra is
    declared = project["dependencies"] + project["optional-dependencies"]["bench"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in declared}
    missing = {DISTRIBUTION.get(n, n).replace("_", "-") for n in imported_top_level()} - names
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
