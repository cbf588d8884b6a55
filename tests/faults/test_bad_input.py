"""Bad inventory data is refused before any host is touched, naming the key and the fix; secrets stay hidden.

podinfra.data.settings reads pyinfra's Host only through `.name`, `.data.get` and `.data.dict`, so a plain
stand-in drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.exceptions import DeployError

from podinfra.data import models
from podinfra.data import settings as data


@dataclass
class Data:
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def dict(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass
class FakeHost:
    data: Data
    name: str = "node1"


@pytest.fixture
def ca(tmp_path) -> Path:
    from podinfra.data import pki

    return pki.ensure_ca(tmp_path / "pki")[0]


def node(ca: Path, **overrides: Any) -> FakeHost:
    values = {"kubernetes_version": "1.31", "local_registry": "10.0.0.2:5000", "registry_ca": str(ca), **overrides}
    return FakeHost(Data({k: v for k, v in values.items() if v is not None}))


def test_good_node_data_passes(ca):
    settings = data.node_settings(node(ca, registry_pull_password="s3cret"))  # type: ignore[arg-type]
    assert (settings.pause, settings.local_registry, settings.pull_credentials) == (
        "3.10",
        "10.0.0.2:5000",
        ("pull", "s3cret"),
    )
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"kubernetes_version": "1.99"}, "pause_tag"),
        ({"kubernetes_version": "1.99", "pause_tag": "3.10 2"}, "pause_tag"),
        ({"kubernetes_version": "1.99", "pause_tag": 3.11}, "pause_tag"),
        ({"kubernetes_version": 1.31}, "kubernetes_version"),
        ({"kubernetes_version": None}, "kubernetes_version"),
        ({"local_registry": "https://10.0.0.2:5000"}, "local_registry"),
        ({"local_registry": None}, "local_registry"),
        ({"registry_prefix": "Bad Prefix"}, "registry_prefix"),
        ({"sandbox_image_mode": "rewrite"}, "sandbox_image_mode"),
        ({"registry_ca": None}, "registry_ca"),
        ({"registry_ca": "/nonexistent/ca.crt"}, "registry_ca"),
        ({"registry_ca": "elsewhere"}, "registry_ca"),
        ({"kubelet_flags_create": "yes"}, "kubelet_flags_create"),
        ({"old_pause": "delete"}, "old_pause"),
        ({"registry_pull_password": 1234}, "registry_pull_password"),
        ({"mirrored_registries": "registry.k8s.io"}, "mirrored_registries"),
        ({"restart_batch": 0}, "restart_batch"),
        ({"restart_batch": True}, "restart_batch"),
        ({"max_failed_nodes": -1}, "max_failed_nodes"),
        ({"restart_batch": "0%"}, "restart_batch"),
        ({"restart_batch": "110%"}, "restart_batch"),
        ({"restart_batch": "ten"}, "restart_batch"),
        ({"restart_batch": "10"}, "restart_batch"),
        ({"max_failed_nodes": "-5%"}, "max_failed_nodes"),
        ({"containerd_config": "etc/containerd/config.toml"}, "containerd_config"),
    ],
)
def test_bad_node_data_names_the_key(ca, overrides, key):
    with pytest.raises(DeployError, match=rf"host node1: host data {key}"):
        data.node_settings(node(ca, **overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kubernetes_version": 1.3}, "kubernetes_version=1.3: .* is a number: quote it"),
        ({"kubernetes_version": 1.31}, 'quote it, as "1.31" in the inventory or --data \'KEY="1.31"\''),
        ({"airgap_prob": "10.0.0.1:443"}, "host data airgap_prob: not a podinfra key: did you mean airgap_probe"),
        ({"restart_bacth": 2}, "did you mean restart_batch"),
        ({"local_registy": "10.0.0.2:5000"}, "did you mean local_registry"),
        ({"local_registry": None}, "host data local_registry: required: HOST\\[:PORT\\] of the registry"),
        ({"registry_insecure": True}, 'registry_insecure: no longer read: .*registry_ca: "system"'),
    ],
)
def test_typos_and_numbers_name_the_fix(ca, overrides, message):
    with pytest.raises(DeployError, match=message):
        data.node_settings(node(ca, **overrides))  # type: ignore[arg-type]


def test_keys_of_other_tools_and_of_pyinfra_are_left_alone(ca):
    host = node(ca, ssh_port=2222, _sudo=True, team="platform", node_pool="blue")
    assert data.node_settings(host).kubernetes_version == "1.31"  # type: ignore[arg-type]


def test_the_system_trust_store_is_said_explicitly(ca):
    settings = data.node_settings(node(ca, registry_ca="system"))  # type: ignore[arg-type]
    assert settings.ca is None


def test_a_ca_file_that_is_not_a_certificate_is_refused(ca, tmp_path):
    bogus = tmp_path / "ca.crt"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(DeployError, match="registry_ca.*not a PEM certificate"):
        data.node_settings(node(ca, registry_ca=str(bogus)))  # type: ignore[arg-type]


def test_secrets_are_not_echoed_in_errors(ca):
    with pytest.raises(DeployError) as raised:
        data.node_settings(node(ca, registry_pull_password=["hunter2"]))  # type: ignore[arg-type]
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"mirror_images": "pause"}, "mirror_images"),
        ({"mirror_images": ["UPPER/case"]}, "mirror_images"),
        ({"pause_source": "http://registry.k8s.io"}, "pause_source"),
        ({"pause_source_insecure": "no"}, "pause_source_insecure"),
    ],
)
def test_bad_mirror_data_names_the_key(overrides, key):
    host = FakeHost(Data({"kubernetes_version": "1.31", **overrides}), name="registry")
    with pytest.raises(DeployError, match=key):
        data.mirror_settings(host)  # type: ignore[arg-type]


def test_the_mirror_takes_every_version_the_nodes_run():
    host = FakeHost(Data({}), name="registry")
    nodes = [FakeHost(Data({"kubernetes_version": v})) for v in ("1.31", "1.36", "1.33")]
    nodes.append(FakeHost(Data({"kubernetes_version": "1.38", "pause_tag": "3.11"}), name="node4"))
    settings = data.mirror_settings(host, data.node_pause_tags(nodes))  # type: ignore[arg-type]
    assert [str(i) for i in settings.images] == [
        "registry.k8s.io/pause:3.10",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/pause:3.11",
    ]
    with pytest.raises(DeployError, match="no node names a Kubernetes version"):
        data.mirror_settings(host)  # type: ignore[arg-type]


def test_an_unknown_minor_is_refused_naming_pause_tag(ca):
    with pytest.raises(DeployError) as raised:
        data.node_settings(node(ca, kubernetes_version="1.38"))  # type: ignore[arg-type]
    assert str(raised.value) == (
        "host node1: host data pause_tag: Kubernetes 1.38 is not in podinfra's catalogue (1.24 to 1.37): "
        "set pause_tag to the tag kubeadm 1.38 uses (kubeadm config images list)"
    )


def test_an_unknown_minor_runs_with_pause_tag(ca, caplog):
    settings = data.node_settings(node(ca, kubernetes_version="1.38", pause_tag="3.11"))  # type: ignore[arg-type]
    assert settings.pause == "3.11" and settings.sandbox_image(None) == "registry.k8s.io/pause:3.11"
    local = settings.model_copy(update={"sandbox_image_mode": "local"})
    assert local.sandbox_image("sha256:" + "a" * 64) == "10.0.0.2:5000/pause:3.11@sha256:" + "a" * 64
    assert "overrides" not in caplog.text


@pytest.mark.parametrize("bad", ["", "3.10 2", "-3.10", ".3", "a" * 129, "3.10/x", "3.10@sha256"])
def test_pause_tag_is_an_oci_tag(ca, bad):
    with pytest.raises(DeployError, match=rf"host data pause_tag={bad!r}: {bad!r} is not an image tag"):
        data.node_settings(node(ca, kubernetes_version="1.38", pause_tag=bad))  # type: ignore[arg-type]


def test_pause_tag_over_the_catalogue_is_warned_of(ca, caplog):
    settings = data.node_settings(node(ca, kubernetes_version="1.37", pause_tag="3.10.3"))  # type: ignore[arg-type]
    assert settings.pause == "3.10.3"
    assert "host node1: host data pause_tag='3.10.3' overrides the catalogue's 3.10.2 for Kubernetes 1.37" in (
        caplog.text
    )
    caplog.clear()
    data.node_settings(node(ca, kubernetes_version="1.37", pause_tag="3.10.2"))  # type: ignore[arg-type]
    assert "overrides" not in caplog.text  # the same tag overrides nothing


def test_the_readme_lists_every_key():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert models.keys_table() in readme, "regenerate the table: python -m podinfra.data.models"
