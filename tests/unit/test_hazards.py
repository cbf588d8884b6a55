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


@pytest.mark.parametrize(("release", "named"), [("2.1.0", True), ("2.2.7", True), ("2.3.4", True), ("2.0.4", False)])
def test_several_directories_leave_the_cri_of_2_1_on_with_no_hosts_toml(release, named):
    dirs = ["/etc/containerd/certs.d", "/etc/docker/certs.d"]
    found = hazards.several_dirs(dirs, release)
    assert bool(found) is named
    if found:
        assert "transfer service, which reads config_path as one directory" in found
        assert "the CRI's pulls read no hosts.toml and go to each registry itself" in found
    assert hazards.several_dirs(dirs[:1], release) is None
    assert hazards.several_dirs(dirs, "1.7.24") is None  # 1.x searches the list


def test_the_edit_writes_one_directory_and_says_which_it_no_longer_reads():
    fresh = edit("version = 3\n", "2.2.7", "registry.k8s.io/pause:3.10.1")  # empty: 2.2's two-directory default
    assert "config_path = '/etc/containerd/certs.d'" in fresh.text.replace('"', "'")
    assert any("config_path listed /etc/containerd/certs.d:/etc/docker/certs.d" in note for note in fresh.notes)
    assert any("a hosts.toml kept in /etc/docker/certs.d is no longer read" in note for note in fresh.notes)
    again = edit(fresh.text, "2.2.7", "registry.k8s.io/pause:3.10.1")
    assert (again.text, again.notes) == (fresh.text, ())
    listed = (
        'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/b:/etc/containerd/certs.d"\n'
    )
    assert "config_path = '/etc/containerd/certs.d'" in edit(listed, "2.3.4", "x.io/pause:3.10.2").text.replace(
        '"', "'"
    )
    assert edit("version = 3\n", "2.1.9", "registry.k8s.io/pause:3.10").notes == ()


@pytest.mark.parametrize("release", ["1.6.20", "1.7.24", "2.1.9", "2.3.4"])
def test_dockers_containerd_io_file_is_named_with_its_fix(release):
    with pytest.raises(ConfigError) as raised:
        edit(DOCKER_FILE, release, "registry.k8s.io/pause:3.10")
    message = str(raised.value)
    assert message.startswith("config.toml is Docker's containerd.io file: disabled_plugins = ['cri']")
    assert 'remove "cri" from disabled_plugins, or regenerate the file with `containerd config default' in message
    assert "version = 2" not in message
    assert hazards.docker_package_config({"version": 2, "disabled_plugins": ["cri"]}) is None


def _node(tmp_path: Path, config_path: str, version: str) -> list[str]:
    settings = NodeData.model_validate(
        {"kubernetes_version": "1.35", "local_registry": "10.0.0.2:5000", "registry_ca": "system"}
    ).model_copy(update={"containerd_certs_dir": str(tmp_path / "containerd")})
    expect = catalogue.expectations(settings, ask_registry=False)
    node = Node(
        "n1",
        testinfra.get_host("local://"),
        expect,
        "containerd",
        version,
        "/run/containerd/containerd.sock",
        "test",
        None,
        "localhost",
    )
    return node.config_path_problems(config_path)[1]


def test_the_check_reads_the_directory_containerd_takes(tmp_path: Path):
    for registry in ("registry.k8s.io", "10.0.0.2:5000"):  # podinfra's hosts.toml directories
        (tmp_path / "containerd" / registry).mkdir(parents=True)
    (tmp_path / "docker" / "_default").mkdir(parents=True)
    mine, docker = tmp_path / "containerd", tmp_path / "docker"
    assert _node(tmp_path, f"{mine}:{docker}", "1.7.24") == []  # searched in order: podinfra's first
    assert _node(tmp_path, f"{docker}:{mine}", "1.7.24") == [  # docker's _default comes first: it wins
        f"containerd takes {r}'s hosts.toml from {docker}/_default, not {mine} (config_path "
        f"'{docker}:{mine}' is searched in order)"
        for r in ("registry.k8s.io", "10.0.0.2:5000")
    ]
    assert "reads config_path as one directory" in _node(tmp_path, f"{mine}:{docker}", "2.2.7")[0]
    assert _node(tmp_path, str(mine), "2.2.7") == []
    assert _node(tmp_path, "", "2.1.9") == [f"config_path = '': containerd does not read {mine}"]
