"""The import paths the README gives operators keep working whatever the package's inside looks like."""

import importlib

import pytest

PUBLIC = {
    "podinfra.deploys": ("local_registry", "pause_mirror", "node_runtime", "in_group"),
    "podinfra.facts": ("ContainerdDaemon", "ContainerdVersion", "CrioVersion", "HttpStatus"),
    "podinfra.operations": ("config_file", "pause_pinned", "containerd_restarted", "image_mirrored"),
    "podinfra.suite.plugin": (),
    "podinfra.cli": ("main",),
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_import_path(module: str) -> None:
    found = importlib.import_module(module)
    for name in PUBLIC[module]:
        assert hasattr(found, name), f"{module}.{name} is gone"
