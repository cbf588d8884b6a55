"""The node suite's pure readers and verdicts (podinfra.suite.readers), fed text as nodes show it."""

from __future__ import annotations

import pytest

from podinfra.node.containerd import ctr, daemon
from podinfra.node.containerd.shape import runtime_shape
from podinfra.suite import readers

HOSTS = """
server = "https://10.0.0.2:5000"
capabilities = ["pull", "resolve"]
ca = "/etc/podinfra/registry-ca.crt"

[host."https://10.0.0.3:5000/v2/mirror"]
  capabilities = ["pull"]
  override_path = true
  ca = ["/a.crt", "/b.crt"]
"""


def test_hosts_toml_endpoints_in_containerd_order():
    first, server = readers.hosts_endpoints(HOSTS)
    assert (first.url, first.is_server, first.api_root) == ("https://10.0.0.3:5000/v2/mirror", False, first.url)
    assert first.ca == ("/a.crt", "/b.crt") and first.capabilities == ("pull",)
    assert (server.netloc, server.api_root, server.ca) == (
        "10.0.0.2:5000",
        "https://10.0.0.2:5000/v2",
        ("/etc/podinfra/registry-ca.crt",),
    )
    assert readers.hosts_endpoints('[host."https://x"]\n')[0].capabilities == readers.DEFAULT_CAPABILITIES
    assert readers.cas_named([HOSTS, "not toml ["]) == {"/a.crt", "/b.crt", "/etc/podinfra/registry-ca.crt"}


GOOD = 'server = "https://10.0.0.2:5000"\ncapabilities = ["pull", "resolve"]\nca = "/ca.crt"\n'


@pytest.mark.parametrize(
    ("text", "node_ca", "problem"),
    [
        (GOOD, {"/ca.crt": "abc"}, None),
        (None, {}, "h.toml is missing: pulls of registry.k8s.io go to registry.k8s.io itself"),
        ('[host."https://10.0.0.2:5000"]\n', {}, "has no `server`: containerd falls back to https://registry.k8s.io"),
        (GOOD.replace("10.0.0.2", "10.0.0.9"), {"/ca.crt": "abc"}, "https://10.0.0.9:5000 is not the local registry"),
        (GOOD, {"/ca.crt": None}, "CA file /ca.crt is missing on the node"),
        (GOOD, {"/ca.crt": "other"}, "CA file /ca.crt is not the registry's CA"),
        (GOOD.replace('ca = "/ca.crt"\n', ""), {}, "https://10.0.0.2:5000 has no `ca`"),
        (GOOD.replace('"pull", "resolve"', '"pull"'), {"/ca.crt": "abc"}, "no host may pull and resolve"),
        ("server = [", {}, "h.toml is not TOML"),
    ],
)
def test_mirror_problems(text, node_ca, problem):
    found = readers.mirror_problems("h.toml", "registry.k8s.io", text, "10.0.0.2:5000", "abc", node_ca)
    assert found == [] if problem is None else any(problem in p for p in found), found


def test_a_registry_trusted_by_the_system_needs_no_ca_file():
    assert readers.mirror_problems("h", "r", GOOD.replace('ca = "/ca.crt"\n', ""), "10.0.0.2:5000", None, {}) == []


@pytest.mark.parametrize(
    ("version", "label", "cri_pinned", "status"),
    [
        ("2.1.9", "pinned", True, "pass"),
        ("2.1.9", "pinned", False, "fail"),  # honours pins, yet its CRI says no: the label is not what it reads
        ("2.1.9", None, False, "fail"),
        ("1.7.24", None, True, "pass"),  # the CRI pins its sandbox image itself: what the kubelet's GC reads
        ("1.7.24", "pinned", True, "pass"),
        ("1.7.2", "pinned", False, "warn"),  # before pins: the stated exception
        ("1.6.20", "pinned", False, "warn"),
        ("1.6.20", None, False, "fail"),
        ("1.6.22", "pinned", False, "fail"),
    ],
)
def test_pin_verdict_follows_the_releases_that_honour_pins(version, label, cri_pinned, status):
    found, phrase = readers.pin_verdict(version, label, cri_pinned)
    assert found == status
    if status == "warn":
        assert "honours pins only from 1.6.22 and 1.7.3" in phrase and "Kubernetes 1.29" in phrase


def test_ctr_listing_gives_digest_labels_and_old_pauses():
    output = (
        "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
        "registry.k8s.io/pause:3.10 application/vnd.oci.image.index.v1+json sha256:46db 299.0 KiB "
        "linux/amd64,linux/arm64/v8 io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned\n"
        "registry.k8s.io/pause:3.9 application/vnd.oci.image.index.v1+json sha256:77aa 299.0 KiB linux/amd64 -\n"
        "sha256:0e22 application/vnd.oci.image.index.v1+json sha256:46db 299.0 KiB linux/amd64 -\n"
    )
    images = ctr.images(output)
    assert images["registry.k8s.io/pause:3.10"].digest == "sha256:46db" and images["registry.k8s.io/pause:3.10"].pinned
    assert images["sha256:0e22"].labels == {}
    assert [i.name for i in ctr.old_pauses(images, "registry.k8s.io/pause:3.10")] == ["registry.k8s.io/pause:3.9"]
    assert readers.store_key("r:5000/m/pause:3.10@sha256:ab") == "r:5000/m/pause@sha256:ab"


def test_sandboxes_on_another_pause_are_named():
    found = [("kube-system/a", "registry.k8s.io/pause:3.9"), ("default/b", "registry.k8s.io/pause:3.10")]
    assert readers.sandboxes_on_other_pause(found, "registry.k8s.io/pause:3.10") == [
        "kube-system/a: registry.k8s.io/pause:3.9"
    ]


def test_curl_headers_and_credentials_config():
    status, headers = readers.http_reply("HTTP/2 401\r\nwww-authenticate: Basic\r\n\r\nHTTP/2 404\r\n\r\n")
    assert (status, headers) == (404, {})
    assert readers.curl_config("pull", 'p"a\\ss') == b'user = "pull:p\\"a\\\\ss"\n'


DUMP_V3 = (
    "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10'\n"
)


def test_the_daemon_probe_output_and_a_pending_restart():
    lines = ["pid=42", "started=1000 50000 100", "config=/etc/containerd/config.toml"]
    lines += ["file=1400 /etc/containerd/config.toml", "file=1600 /etc/containerd/conf.d/x.toml", "--- dump"]
    found = daemon.parse([*lines, *DUMP_V3.splitlines()])
    assert (found.pid, found.started, found.config) == (42, 1500.0, "/etc/containerd/config.toml")
    assert found.changed_since_start() == ["/etc/containerd/conf.d/x.toml"]
    assert found.effective(runtime_shape("2.1.9")) == ("registry.k8s.io/pause:3.10", None)
    # boot time has whole seconds: a file changed less than a second after the start is not counted
    assert daemon.parse(["pid=1", "started=1000 0 100", "file=1000 /c", "--- dump"]).changed_since_start() == []
    stopped = daemon.parse(["config=/c", "file=5 /c", "--- dump"])
    assert stopped.pid is None and stopped.changed_since_start() == ["/c"]


@pytest.mark.parametrize(
    ("look", "ready"),
    [
        ("pause\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000014002\n", True),  # pause
        ("tini\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n", True),  # sigwait
        ("init\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000010000\nSigCgt:\t0000000000000000\n", True),  # ignored
        ("pause\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000004002\n", False),  # not yet
        ("runc:[2:INIT]\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000014002\n", False),
        ("", False),
    ],
)
def test_pid_1_is_ready_to_reap_once_it_handles_sigchld(look: str, ready: bool):
    """pause installs its SIGCHLD handler after its exec: an orphan that exits before that stays a zombie."""
    assert readers.init_reaps(look) is ready
