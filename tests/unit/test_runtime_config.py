"""podinfra.node.runtime_files: hosts.toml, CRI-O drop-ins and kubelet flags, parsed back and compared with golden
files (tests/unit/golden/, reviewed by hand against the runtimes' documentation; ``PODINFRA_UPDATE_GOLDEN=1``
rewrites them)."""

from __future__ import annotations

import base64
import json
import tomllib

import pytest

from podinfra.errors import ConfigError
from podinfra.node import crio, runtime_files
from tests.unit.goldens import golden

IMAGE = "10.213.0.2:5000/pause:3.10"
KUBEADM_FLAGS = """\
# written by kubeadm init
KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock \
--pod-infra-container-image registry.k8s.io/pause:3.9 --node-ip=10.213.0.11"
"""


# --- hosts.toml -----------------------------------------------------------------------------------------


def test_hosts_toml_points_only_at_the_mirror():
    text = runtime_files.hosts_toml(
        "registry.k8s.io", "https://10.213.0.2:5000", "/etc/containerd/certs.d/podinfra-ca.crt"
    )
    parsed = tomllib.loads(text)
    mirror = "https://10.213.0.2:5000"
    assert parsed == {
        "server": mirror,
        "capabilities": ["pull", "resolve"],
        "ca": "/etc/containerd/certs.d/podinfra-ca.crt",
        "host": {mirror: {"capabilities": ["pull", "resolve"], "ca": "/etc/containerd/certs.d/podinfra-ca.crt"}},
    }
    assert "registry.k8s.io" not in text.split("\n", 1)[1], "the upstream appears in the comment only"
    golden("hosts-ca.toml", text)


def test_hosts_toml_with_override_path_and_authorization():
    text = runtime_files.hosts_toml(
        "registry.k8s.io", "https://10.213.0.2:5000/", "/etc/podinfra/ca.crt", "Basic cG9kaW5mcmE6c2VjcmV0", "v2/mirror"
    )
    parsed = tomllib.loads(text)
    root = "https://10.213.0.2:5000/v2/mirror"
    settings = {
        "capabilities": ["pull", "resolve"],
        "ca": "/etc/podinfra/ca.crt",
        "override_path": True,
        "header": {"Authorization": "Basic cG9kaW5mcmE6c2VjcmV0"},
    }
    assert parsed == {"server": root, **settings, "host": {root: settings}}
    golden("hosts-override-auth.toml", text)


def test_hosts_toml_plain_http_mirror():
    parsed = tomllib.loads(runtime_files.hosts_toml("localhost:5100", "http://10.213.0.2:5000", None))
    assert parsed == {
        "server": "http://10.213.0.2:5000",
        "capabilities": ["pull", "resolve"],
        "host": {"http://10.213.0.2:5000": {"capabilities": ["pull", "resolve"]}},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("registry.k8s.io", "10.213.0.2:5000", None), "https:// or http:// URL"),
        (("registry.k8s.io", "ftp://10.213.0.2", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://user:pw@10.213.0.2", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://10.213.0.2:5000?x=1", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://bad host", None), "not a registry host"),
        (("registry.k8s.io", "http://10.213.0.2:5000", "/ca.crt"), "plain-HTTP"),
        (("registry.k8s.io/pause", "https://10.213.0.2:5000", None), "host\\[:port\\] only"),
        (("registry.k8s.io", "https://10.213.0.2:5000", None, "Basic a\nb"), "on one line"),
        (("registry.k8s.io", "https://10.213.0.2:5000/v2/x", None, None, "/v2/y"), "has a path"),
        (("registry.k8s.io", "https://10.213.0.2:5000", None, None, "/"), "API root path"),
    ],
)
def test_hosts_toml_refuses_bad_input(args, message):
    with pytest.raises(ConfigError, match=message):
        runtime_files.hosts_toml(*args)


# --- CRI-O ----------------------------------------------------------------------------------------------


def test_crio_dropin_names_the_pause_and_the_auth_file():
    text = crio.dropin("registry.k8s.io/pause:3.10", "/etc/crio/podinfra-auth.json")
    assert tomllib.loads(text) == {
        "crio": {
            "image": {"pause_image": "registry.k8s.io/pause:3.10", "global_auth_file": "/etc/crio/podinfra-auth.json"}
        }
    }
    golden("crio-90-podinfra.conf", text)
    # no pinned_images: a drop-in's list would replace the operator's, and CRI-O pins its pause_image itself
    assert tomllib.loads(crio.dropin(IMAGE, None)) == {"crio": {"image": {"pause_image": IMAGE}}}
    with pytest.raises(ConfigError, match="not an image reference"):
        crio.dropin("docker://pause", None)


def test_crio_registries_rewrite_each_mirrored_registry_to_the_local_registry_only():
    text = crio.registries_conf(["registry.k8s.io", "docker.io"], "10.213.0.2:5000/mirror")
    entries = tomllib.loads(text)["registry"]
    # a location rewrite and no mirror table: the local registry is the only source, nothing falls back
    assert entries == [
        {"prefix": "registry.k8s.io", "location": "10.213.0.2:5000/mirror"},
        {"prefix": "docker.io", "location": "10.213.0.2:5000/mirror"},
    ]
    golden("crio-90-podinfra-registries.conf", text)


@pytest.mark.parametrize(
    ("upstream", "location"),
    [("registry.k8s.io", "https://10.213.0.2:5000"), ("https://registry.k8s.io", "10.213.0.2:5000")],
)
def test_crio_registries_conf_refuses_schemes(upstream, location):
    with pytest.raises(ConfigError, match="without a scheme"):
        crio.registries_conf([upstream], location)


def test_crio_auth_file_is_containers_auth_json_for_the_physical_registry():
    parsed = json.loads(crio.auth_json("10.213.0.2:5000", "pull", "s3cret"))
    assert parsed == {"auths": {"10.213.0.2:5000": {"auth": base64.b64encode(b"pull:s3cret").decode()}}}
    assert crio.ca_path("10.213.0.2:5000") == "/etc/containers/certs.d/10.213.0.2:5000/ca.crt"


# --- kubelet --------------------------------------------------------------------------------------------


def test_kubelet_flags_1_34_replaces_the_flag_in_place():
    text = runtime_files.kubelet_flags(KUBEADM_FLAGS, "1.34", IMAGE)
    assert text == (
        "# written by kubeadm init\n"
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
        f'--pod-infra-container-image={IMAGE} --node-ip=10.213.0.11"\n'
    )
    assert runtime_files.kubelet_flags(text, "1.34.2", IMAGE) == text
    golden("kubelet-1.34-kubeadm-flags.env", text)


def test_kubelet_flags_1_35_removes_the_flag():
    text = runtime_files.kubelet_flags(KUBEADM_FLAGS, "1.35", IMAGE)
    assert text == (
        "# written by kubeadm init\n"
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
        '--node-ip=10.213.0.11"\n'
    )
    assert runtime_files.kubelet_flags(text, "v1.36.0", IMAGE) == text
    golden("kubelet-1.35-kubeadm-flags.env", text)


@pytest.mark.parametrize(
    ("existing", "v134", "v135"),
    [
        (
            'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=registry.k8s.io/pause:3.9 --node-ip=10.0.0.1"\n',
            f'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image={IMAGE} --node-ip=10.0.0.1"\n',
            'KUBELET_KUBEADM_ARGS="--v=2 --node-ip=10.0.0.1"\n',
        ),
        (
            "KUBELET_KUBEADM_ARGS='--pod-infra-container-image registry.k8s.io/pause:3.9 --v=2'",
            f"KUBELET_KUBEADM_ARGS='--pod-infra-container-image={IMAGE} --v=2'",
            "KUBELET_KUBEADM_ARGS='--v=2'",
        ),
        (
            'A=1\nKUBELET_KUBEADM_ARGS="--v=2"\nB=2\n',
            f'A=1\nKUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image={IMAGE}"\nB=2\n',
            'A=1\nKUBELET_KUBEADM_ARGS="--v=2"\nB=2\n',
        ),
        (
            "KUBELET_KUBEADM_ARGS=--pod-infra-container-image=a.io/p:1 -pod-infra-container-image b.io/p:2 --v=2\n",
            f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE} --v=2"\n',
            'KUBELET_KUBEADM_ARGS="--v=2"\n',
        ),
        ("A=1", f'A=1\nKUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE}"\n', 'A=1\nKUBELET_KUBEADM_ARGS=""\n'),
        (None, f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE}"\n', 'KUBELET_KUBEADM_ARGS=""\n'),
        (
            'KUBELET_KUBEADM_ARGS="--pod-infra-container-image --v=2"\n',
            f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE} --v=2"\n',
            'KUBELET_KUBEADM_ARGS="--v=2"\n',
        ),
    ],
)
def test_kubelet_flags_forms(existing, v134, v135):
    assert runtime_files.kubelet_flags(existing, "1.34", IMAGE) == v134
    assert runtime_files.kubelet_flags(existing, "1.35", IMAGE) == v135
    assert runtime_files.kubelet_flags(v134, "1.34", IMAGE) == v134
    assert runtime_files.kubelet_flags(v134, "1.35", IMAGE) == v135


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ('KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=r/pause:3.10"\n', "r/pause:3.10"),
        ("KUBELET_KUBEADM_ARGS='--pod-infra-container-image r/pause:3.9 --v=2'\n", "r/pause:3.9"),
        ("export KUBELET_KUBEADM_ARGS=--pod-infra-container-image=x:1\n", "x:1"),
        ('KUBELET_KUBEADM_ARGS="--v=2"\n', None),
        # no value: the next word is a flag (kubelet_flags drops the lone flag and keeps --v=2 the same way)
        ('KUBELET_KUBEADM_ARGS="--pod-infra-container-image --v=2"\n', None),
        ("", None),
    ],
)
def test_kubelet_flag_forms(text: str, flag: str | None):
    assert runtime_files.kubelet_pause_flag(text) == flag


@pytest.mark.parametrize(
    ("kubernetes", "image", "message"),
    [("latest", IMAGE, "not a version"), ("1.34", "Pause", "lowercase")],
)
def test_kubelet_flags_refuses_unknown_input(kubernetes, image, message):
    with pytest.raises(ConfigError, match=message):
        runtime_files.kubelet_flags(None, kubernetes, image)
