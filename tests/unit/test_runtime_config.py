"""podinfra.node.runtime_files: hosts.toml, CRI-O drop-ins and kubelet flags, parsed back and compared with golden
files (tests/unit/golden/, reviewed by hand against the runtimes' documentation; ``PODINFRA_UPDATE_GOLDEN=1``
rewrites them)."""

from __future__ import annotations

import tomllib

import pytest

from podinfra.errors import ConfigError
from podinfra.node import runtime_files
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


def test_crio_dropin():
    text = runtime_files.crio_dropin(IMAGE)
    assert tomllib.loads(text) == {"crio": {"image": {"pause_image": IMAGE, "pinned_images": [IMAGE]}}}
    golden("crio-10-podinfra-pause.conf", text)


def test_crio_dropin_carries_the_node_pins():
    text = runtime_files.crio_dropin(IMAGE, ["quay.io/calico/node:*", IMAGE])
    assert tomllib.loads(text)["crio"]["image"]["pinned_images"] == [IMAGE, "quay.io/calico/node:*"]
    with pytest.raises(ConfigError, match="not an image reference"):
        runtime_files.crio_dropin("docker://pause")


def test_crio_registries_conf():
    text = runtime_files.crio_registries_conf("registry.k8s.io", "10.213.0.2:5000/mirror")
    assert tomllib.loads(text) == {
        "registry": [
            {
                "prefix": "registry.k8s.io",
                "location": "10.213.0.2:5000/mirror",
                "mirror": [{"location": "10.213.0.2:5000/mirror"}],
            }
        ]
    }
    golden("crio-10-podinfra-mirror.conf", text)


def test_crio_registries_conf_insecure():
    text = runtime_files.crio_registries_conf("registry.k8s.io", "10.213.0.2:5000", insecure=True)
    assert tomllib.loads(text)["registry"] == [
        {
            "prefix": "registry.k8s.io",
            "location": "10.213.0.2:5000",
            "insecure": True,
            "mirror": [{"location": "10.213.0.2:5000", "insecure": True}],
        }
    ]
    golden("crio-10-podinfra-mirror-insecure.conf", text)


@pytest.mark.parametrize(
    ("upstream", "mirror"),
    [("registry.k8s.io", "https://10.213.0.2:5000"), ("https://registry.k8s.io", "10.213.0.2:5000")],
)
def test_crio_registries_conf_refuses_schemes(upstream, mirror):
    with pytest.raises(ConfigError, match="without a scheme"):
        runtime_files.crio_registries_conf(upstream, mirror)


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
