import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podinfra import versions
from podinfra.images.reference import ReferenceError, parse, split_registry
from podinfra.versions import VersionError

KUBEADM = json.loads((Path(__file__).parent / "fixtures" / "kubeadm_pause.json").read_text())


def test_the_catalogue_is_kubeadms_pause_version_of_every_recorded_release():
    recorded = KUBEADM["releases"]
    assert {release: versions.pause_tag(release) for release in recorded} == recorded
    # every minor the catalogue names was recorded, at its .0 release or the one KUBERNETES_PAUSE_READ_AT names
    read_at = {m: versions.KUBERNETES_PAUSE_READ_AT.get(m, f"v{m}.0") for m in versions.KUBERNETES_PAUSE}
    assert {m: recorded[tag] for m, tag in read_at.items()} == versions.KUBERNETES_PAUSE


def test_containerd_defaults_and_kubelet_flag():
    assert [versions.containerd_default_pause(v) for v in ("1.6.20", "1.7", "2.0", "2.1", "2.2", "2.3")] == [
        "3.6",
        "3.8",
        "3.10",
        "3.10",
        "3.10.1",
        "3.10.2",
    ]
    assert versions.containerd_default_pause("2.4.0-beta.0") == "3.10.2"
    assert versions.kubelet_takes_pause_flag("1.34") and not versions.kubelet_takes_pause_flag("1.35")
    assert versions.newest_kubernetes() == "1.37"


@pytest.mark.parametrize(
    ("containerd", "image"),
    [
        ("1.6.0", "k8s.gcr.io/pause:3.6"),
        ("1.6.8", "k8s.gcr.io/pause:3.6"),
        ("1.6.9", "registry.k8s.io/pause:3.6"),
        ("1.7.24~ds1-6+deb13u1", "registry.k8s.io/pause:3.8"),
        ("2.1.9", "registry.k8s.io/pause:3.10"),
    ],
)
def test_containerd_default_sandbox_image(containerd, image):
    assert versions.containerd_default_sandbox(containerd) == image


@pytest.mark.parametrize(
    ("containerd", "pins"),
    [("1.6.20", False), ("1.6.21", False), ("1.6.22", True), ("1.7.0", False), ("1.7.2", False)]
    + [("1.7.3", True), ("1.7.24", True), ("2.0.0", True), ("2.1.9", True)],
)
def test_pins_are_honoured_from_1_6_22_and_1_7_3(containerd, pins):
    assert versions.containerd_honours_pins(containerd) is pins


def test_kubernetes_1_36_needs_containerd_2():
    assert versions.containerd_supported("1.35", "1.7.24") and versions.containerd_supported("1.36", "2.1.9")
    assert not versions.containerd_supported("1.36", "1.7.24")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("1.23", r"Kubernetes 1.23 is not in podinfra.s catalogue \(1.24 to 1.37\): set pause_tag"),
        ("1.38", "the tag kubeadm 1.38 uses"),
        ("latest", "not a version"),
        ("1", "not a version"),
        ("", "not a version"),
    ],
)
def test_unknown_or_malformed_versions_name_the_range(bad, message):
    with pytest.raises(VersionError, match=message):
        versions.pause_tag(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("registry.k8s.io/pause:3.10", ("registry.k8s.io", "pause", "3.10", None)),
        ("pause", ("docker.io", "library/pause", "latest", None)),
        ("localhost:5000/a/b@sha256:" + "0" * 64, ("localhost:5000", "a/b", None, "sha256:" + "0" * 64)),
        ("10.0.0.2:5000/mirror/pause:3.9", ("10.0.0.2:5000", "mirror/pause", "3.9", None)),
    ],
)
def test_references_parse_like_containerd(text, expected):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(
    "bad",
    ["", " pause", "https://registry.k8s.io/pause", "Pause:3.10", "pause:", "pause@sha256:abc", "a//b", "pause:-x"],
)
def test_malformed_references_are_refused(bad):
    with pytest.raises(ReferenceError):
        parse(bad)


@given(st.text(max_size=80))
def test_parser_never_crashes_and_round_trips(text):
    try:
        ref = parse(text)
    except ReferenceError:
        return
    assert parse(str(ref)) == ref


def test_registry_with_prefix():
    assert split_registry("10.0.0.2:5000/mirror/") == ("10.0.0.2:5000", "mirror")
    with pytest.raises(ReferenceError, match="without a scheme"):
        split_registry("https://10.0.0.2:5000")


def test_podinfra_versions_lists_1_37_with_its_pause_and_source(capsys):
    from podinfra.cli import main

    assert main(["versions"]) == 0
    out = capsys.readouterr().out
    assert "1.37        registry.k8s.io/pause:3.10.2" in out and "v1.37.0-rc.0" in out
    assert "kubernetes/minikube" in out and "DefaultSandboxImage" in out
    assert main(["versions", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kubernetes"]["1.37"] == {"pause": "3.10.2", "kubelet_flag": False, "read_at": "v1.37.0-rc.0"}
    assert "minikube" in shown["kubernetes_source"]
