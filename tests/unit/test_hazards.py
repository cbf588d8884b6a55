"""Hazards of containerd releases and configs (podinfra.node.containerd.hazards), in the edit the deploy
makes and in what the checks read. containerd 2.3.0-2.3.3 are not here as binaries (the lab's 2.3 is
2.3.4, which is fixed): that hazard is tested from version numbers, per containerd's git at its tags."""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra

from podinfra.check import catalogue
from podinfra.data.models import NodeData
from podinfra.errors import ConfigError
from podinfra.node.containerd import hazards
from podinfra.node.containerd.config import edit
from podinfra.suite.node import Node

DIGEST = "sha256:" + "0" * 64
LOCAL = f"10.0.0.2:5000/pause:3.10.2@{DIGEST}"
DOCKER_FILE = '#root = "/var/lib/containerd"\n#state = "/run/containerd"\n\ndisabled_plugins = ["cri"]\n'


@pytest.mark.parametrize("patch", ["2.3.0", "2.3.1", "2.3.2", "2.3.3"])
@pytest.mark.parametrize(("image", "form"), [(LOCAL, "a tag plus digest"), ("pause:3.10.2", "a short name")])
def test_2_3_0_to_2_3_3_cannot_start_a_tag_plus_digest_or_short_name_sandbox(patch, image, form):
    found = hazards.sandbox_image(patch, image)
    assert found and found.startswith(f"containerd {patch} cannot start a sandbox from {image} ({form}")
    assert "containerd#13529/#13513, fixed in 2.3.4" in found
    with pytest.raises(ConfigError, match=f"containerd {patch} cannot start"):
        edit("version = 3\n", patch, image)


@pytest.mark.parametrize("release", ["2.2.7", "2.3.4", "2.4.0-beta.0", "1.7.24"])
def test_the_same_images_are_fine_elsewhere(release):
    assert hazards.sandbox_image(release, LOCAL) is None
    assert hazards.sandbox_image(release, "registry.k8s.io/pause:3.10.2") is None
    assert hazards.sandbox_image("2.3.1", "registry.k8s.io/pause:3.10.2") is None  # canonical: a full name


@pytest.mark.parametrize("release", ["1.6.20", "1.7.24", "2.1.9", "2.2.7", "2.3.4"])
def test_a_tagless_sandbox_image_is_never_pinned_anywhere(release):
    found = hazards.sandbox_image(release, "10.0.0.2:5000/pause")
    assert found and "has no tag: containerd never pins it (containerd#13314)" in found
    assert hazards.sandbox_image(release, f"10.0.0.2:5000/pause@{DIGEST}") is None  # a digest names it exactly


@pytest.mark.parametrize(
    ("current", "release", "dirs"),
    [
        ("", "2.1.9", []),
        ("", "2.2.0", ["/etc/containerd/certs.d", "/etc/docker/certs.d"]),
        ("", "2.3.4", ["/etc/containerd/certs.d", "/etc/docker/certs.d"]),
        ("/a:/b", "1.7.24", ["/a", "/b"]),
        ("/etc/containerd/certs.d", "2.2.7", ["/etc/containerd/certs.d"]),
    ],
)
def test_the_directories_containerd_searches(current, release, dirs):
    assert hazards.config_path_dirs(current, release) == dirs


def test_containerd_takes_the_first_directory_with_the_registrys_or_default():
    dirs = ["/a", "/b"]
    assert hazards.hosts_dir_used(dirs, "registry.k8s.io", {"/b/registry.k8s.io": True}) == "/b/registry.k8s.io"
    both = {"/a/_default": True, "/b/registry.k8s.io": True}
    assert hazards.hosts_dir_used(dirs, "registry.k8s.io", both) == "/a/_default"
    assert hazards.hosts_dir_used(dirs, "10.0.0.2:5000", {"/a/10.0.0.2_5000_": True}) == "/a/10.0.0.2_5000_"
    assert hazards.hosts_dir_used(dirs, "registry.k8s.io", {}) is None


def test_the_edit_writes_podinfras_directory_alone_and_names_the_ones_no_longer_searched():
    """A list in config_path sent the real 2.2.7's CRI pulls (through the transfer service) upstream."""
    fresh = edit("version = 3\n", "2.2.7", "registry.k8s.io/pause:3.10.1")
    assert fresh.config_path == "/etc/containerd/certs.d"
    assert "config_path = '/etc/containerd/certs.d'" in fresh.text.replace('"', "'")
    assert any("no longer reads hosts.toml under /etc/docker/certs.d" in note for note in fresh.notes)
    again = edit(fresh.text, "2.2.7", "registry.k8s.io/pause:3.10.1")
    assert (again.text, again.notes) == (fresh.text, ())
    listed = (
        'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/b:/etc/containerd/certs.d"\n'
    )
    assert edit(listed, "2.3.4", "registry.k8s.io/pause:3.10.2").config_path == "/etc/containerd/certs.d"
    assert edit(None, "2.3.4", "registry.k8s.io/pause:3.10.2").config_path == "/etc/containerd/certs.d"
    assert edit("version = 3\n", "2.1.9", "registry.k8s.io/pause:3.10").config_path == "/etc/containerd/certs.d"


@pytest.mark.parametrize("release", ["1.6.20", "1.7.24", "2.1.9", "2.3.4"])
def test_dockers_containerd_io_file_is_named_with_its_fix(release):
    with pytest.raises(ConfigError) as raised:
        edit(DOCKER_FILE, release, "registry.k8s.io/pause:3.10")
    message = str(raised.value)
    assert message.startswith("config.toml is Docker's containerd.io file: disabled_plugins = ['cri']")
    assert 'remove "cri" from disabled_plugins, or regenerate the file with `containerd config default' in message
    assert "version = 2" not in message
    assert hazards.docker_package_config({"version": 2, "disabled_plugins": ["cri"]}) is None


def _node(tmp_path: Path, config_path: str) -> tuple[Node, dict[str, str | None]]:
    settings = NodeData.model_validate(
        {"kubernetes_version": "1.35", "local_registry": "10.0.0.2:5000", "registry_ca": "system"}
    ).model_copy(update={"containerd_certs_dir": str(tmp_path / "containerd")})
    node = Node(
        "n1",
        testinfra.get_host("local://"),
        catalogue.expectations(settings, ask_registry=False),
        "containerd",
        "2.2.7",
        None,
        "localhost",
    )
    return node, node.hosts_dirs_read(config_path)[1]


def test_the_check_reads_the_directory_containerd_takes(tmp_path: Path):
    (tmp_path / "containerd" / "registry.k8s.io").mkdir(parents=True)
    (tmp_path / "docker" / "_default").mkdir(parents=True)
    mine, docker = tmp_path / "containerd", tmp_path / "docker"
    _, used = _node(tmp_path, f"{mine}:{docker}")
    assert used == {"registry.k8s.io": f"{mine}/registry.k8s.io", "10.0.0.2:5000": f"{docker}/_default"}
    _, used = _node(tmp_path, f"{docker}:{mine}")  # docker's _default comes first: it wins for every registry
    assert used == {"registry.k8s.io": f"{docker}/_default", "10.0.0.2:5000": f"{docker}/_default"}
