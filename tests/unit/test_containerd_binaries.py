"""podinfra.node.containerd.config's edited files fed to the real containerd 1.6, 1.7 and 2.1 binaries
(``containerd config dump``): each line starts with every file podinfra writes for it."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from podinfra.node.containerd.config import edit
from podinfra.node.containerd.shape import runtime_shape, version_from_output
from tests.unit.containerd_files import CERTS, IMAGE, OPERATOR_V2, OPERATOR_V3, STALE_V3, at

# --- the real containerd 1.6, 1.7 and 2.1 binaries --------------------------------------------------------
# 1.6 is this host's package (./run installs it), 1.7 and 2.1 the lab's cache (`podinfra lab fetch`, which
# ./run test calls). `containerd --config FILE config dump` reads the file and starts nothing.

LINES = {"1.6": ("1.6.20", OPERATOR_V2), "1.7": ("1.7.24", OPERATOR_V2), "2.1": ("2.1.9", OPERATOR_V3)}


def binary(line: str) -> Path:
    from podinfra.lab import suites

    found = Path("/usr/bin/containerd") if line == "1.6" else None
    cached = suites.cached("containerd", line) if line != "1.6" else None
    found = found or (cached[0] / "usr/bin/containerd" if cached else None)
    if found is None or not found.exists():
        message = f"containerd {line} is not on this machine: run `podinfra lab fetch`"
        if os.environ.get("PODINFRA_REQUIRE_BINARIES") == "1":  # ./run test: every line must run
            pytest.fail(message)
        pytest.skip(message)
    return found


def dump(line: str, tmp_path: Path, text: str) -> tuple[dict[str, Any], str]:
    """The effective config (and containerd's warnings) of `text` on the real containerd `line`."""
    config = tmp_path / "config.toml"
    # keep the dump hermetic: imports would read this host's /etc/containerd/conf.d
    config.write_text(text.replace("/etc/containerd/conf.d", str(tmp_path / "conf.d")))
    result = subprocess.run(
        [str(binary(line)), "--config", str(config), "config", "dump"], capture_output=True, text=True, check=True
    )
    return tomllib.loads(result.stdout), result.stderr


@pytest.mark.parametrize("line", LINES)
def test_each_real_binary_is_its_lines_shape(line):
    output = subprocess.run([str(binary(line)), "--version"], capture_output=True, text=True, check=True).stdout
    version = version_from_output(output)
    assert version.startswith(f"{line}.")
    assert runtime_shape(version) == runtime_shape(LINES[line][0])


@pytest.mark.parametrize("start", ["new", "operator", "lab", "debian-v2"])
@pytest.mark.parametrize("line", LINES)
def test_real_containerd_runs_every_edited_file_of_its_line(tmp_path, line, start):
    from podinfra.lab.image import config_file

    version, operator = LINES[line]
    existing = {
        "new": None,
        "operator": operator,
        "lab": config_file(line).decode(),
        "debian-v2": config_file("1.7").decode(),  # Debian ships the same version 2 file with 2.1
    }[start]
    text = edit(existing, version, IMAGE).text
    shape = runtime_shape(version)
    found, warnings = dump(line, tmp_path, text)
    assert found["version"] == shape.config_version
    assert (at(found, shape.sandbox_path), at(found, shape.config_path_path)) == (IMAGE, CERTS)
    assert "Ignoring unknown key" not in warnings, warnings
    if start == "operator":
        runtime = found["plugins"][
            "io.containerd.grpc.v1.cri" if shape.config_version == 2 else "io.containerd.cri.v1.runtime"
        ]
        assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
        assert runtime["restrict_oom_score_adj"] is True


def test_real_containerd_2_ignores_1x_keys_that_the_edit_removes(tmp_path):
    _, before = dump("2.1", tmp_path, STALE_V3)
    assert "key=sandbox_image" in before and "key=registry" in before
    _, after = dump("2.1", tmp_path, edit(STALE_V3, "2.1.9", IMAGE).text)
    assert "Ignoring unknown key" not in after


def test_real_containerd_1x_import_replaces_the_whole_plugin_table(tmp_path):
    # Why the edit goes into the main file: a 1.x drop-in naming the CRI plugin resets everything else in it.
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-log.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  max_container_log_line_size = 1\n'
    )
    cri = dump("1.6", tmp_path, edit(OPERATOR_V2, "1.6.20", IMAGE).text)[0]["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["max_container_log_line_size"] == 1
    assert cri["sandbox_image"] != IMAGE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
