"""Checks 10-14, run only with ``podinfra check --upgrade-to VERSION``: what breaks if this node moves to
Kubernetes VERSION. They only read (the snapshot, the local registry from the control host); nothing on
the node changes.
"""

from __future__ import annotations

import pytest

from podinfra import versions
from podinfra.check.catalogue import CheckResult, Upgrade
from podinfra.node.containerd.shape import runtime_shape
from podinfra.node.runtime_files import kubelet_pause_flag
from podinfra.suite.node import Node

# The kubelet's own words when it meets the flag it no longer has (Kubernetes 1.35, kubernetes#133779).
UNKNOWN_FLAG = "failed to parse kubelet flag: unknown flag: --pod-infra-container-image"


def _target(node: Node) -> Upgrade:
    target = node.expect.upgrade
    if target is None:  # the plugin deselects these checks without --upgrade-to
        pytest.skip("no --upgrade-to")
    return target


@pytest.mark.check("10")
def test_target_pause_is_in_the_local_registry(node: Node, record: CheckResult) -> None:
    target, settings = _target(node), node.expect.settings
    image = f"{settings.local_registry}/{settings.pause_repository}:{target.tag}"
    record.expected = f"{image} (Kubernetes {target.version}'s pause) in the local registry, by digest"
    if target.digest is None:
        record.actual = f"pause:{target.tag} for Kubernetes {target.version}: {target.digest_source}"
        pytest.fail(record.actual)
    record.actual = f"{image} at {target.digest}"


@pytest.mark.check("11")
def test_target_supports_the_nodes_runtime(node: Node, record: CheckResult) -> None:
    target = _target(node)
    record.expected = f"a containerd line that Kubernetes {target.version} supports"
    if node.runtime != "containerd":
        record.info(f"{node.runtime} {node.version}: podinfra does not judge CRI-O's support matrix")
        return
    line = ".".join(node.version.split(".")[:2])
    record.actual = f"containerd {node.version} (line {line})"
    if not versions.containerd_supported(target.version, node.version):
        last = f"1.{int(versions.CONTAINERD_2_REQUIRED.split('.')[1]) - 1}"
        record.actual += f": Kubernetes {target.version} needs containerd 2.0 or later; the 1.x lines end at {last}"
        pytest.fail(record.actual)


@pytest.mark.check("12")
def test_target_config_version(node: Node, record: CheckResult) -> None:
    target = _target(node)
    if node.runtime != "containerd":
        record.info(f"{node.runtime} {node.version}: drop-ins, no config version")
        return
    wants = runtime_shape(node.version).config_version
    found = node.daemon.document.get("version")
    record.expected = f"config version {wants}"
    note = "" if versions.containerd_supported(target.version, node.version) else (
        "; containerd 2.x, which the target needs, reads version 3 (2.0-2.2) or 4 (2.3+): run deploys/node.py "
        "after the runtime upgrade"
    )  # fmt: skip
    record.info(f"containerd {node.version} reads config version {wants} (its effective config: {found}){note}")


@pytest.mark.check("13")
def test_target_kubelet_takes_its_flags(node: Node, record: CheckResult) -> None:
    target, settings = _target(node), node.expect.settings
    path = settings.kubelet_flags_file
    takes = versions.kubelet_takes_pause_flag(target.version)
    record.expected = (
        f"no --pod-infra-container-image in {path} (the kubelet of {target.version} refuses it)"
        if not takes
        else f"kubelet flags the kubelet of {target.version} takes"
    )
    text = node.read(path)
    flag = kubelet_pause_flag(text) if text is not None else None
    if flag and not takes:
        record.actual = (
            f"--pod-infra-container-image={flag} in {path}: the kubelet of Kubernetes {target.version} will not "
            f'start ("{UNKNOWN_FLAG}")'
        )
        pytest.fail(record.actual)
    record.actual = f"{path} is missing" if text is None else f"{path}: no flag the target refuses"


@pytest.mark.check("14")
def test_what_becomes_of_the_old_pause(node: Node, record: CheckResult) -> None:
    target, settings = _target(node), node.expect.settings
    if target.tag == settings.pause:
        record.info(f"pause:{settings.pause} is also Kubernetes {target.version}'s: nothing is released")
        return
    fate = {
        "unpin": "unpinned (image GC may then remove it)",
        "remove": "removed",
        "keep": "kept, pinned",
    }[settings.old_pause]
    record.info(
        f"after the node deploy at {target.version}, sandboxes start from pause:{target.tag}; those running "
        f"pause:{settings.pause} keep it until their pods are recreated, then it is {fate} (old_pause: "
        f"{settings.old_pause})"
    )
