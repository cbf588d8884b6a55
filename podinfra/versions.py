"""Which pause tag each Kubernetes minor and each containerd line expects.

Kubernetes: kubeadm's `PauseVersion` constant per minor (kubeadm pre-pulls it and, below 1.35,
passes it to the kubelet). containerd: the `sandbox_image` / `pinned_images.sandbox` default
that a node falls back to when its config does not say, the usual source of drift.
"""

from __future__ import annotations

import re

from podinfra.errors import PodinfraError

# Where Kubernetes publishes pause (and where nodes look for it unless told otherwise).
UPSTREAM = "registry.k8s.io"
KUBERNETES_PAUSE = {
    "1.24": "3.7",
    "1.25": "3.8",
    **{f"1.{m}": "3.9" for m in range(26, 31)},
    **{f"1.{m}": "3.10" for m in range(31, 34)},
    "1.34": "3.10.1",
    "1.35": "3.10.1",
    "1.36": "3.10.2",
}
CONTAINERD_PAUSE = {"1.6": "3.6", "1.7": "3.8", "2.0": "3.10", "2.1": "3.10", "2.2": "3.10.1", "2.3": "3.10.2"}
# From this Kubernetes minor on the kubelet refuses --pod-infra-container-image.
KUBELET_FLAG_REMOVED = "1.35"

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?$")


class VersionError(PodinfraError, ValueError):
    """A version podinfra does not know; the message names the supported range."""


def minor(version: str) -> str:
    """``"v1.31.2"`` -> ``"1.31"``; anything that is not a version raises VersionError."""
    match = _VERSION.match(version.strip())
    if not match:
        raise VersionError(f"{version!r} is not a version: write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.31")
    return f"{int(match[1])}.{int(match[2])}"


def _key(version: str) -> tuple[int, int]:
    major, minor_ = version.split(".")
    return int(major), int(minor_)


def _lookup(table: dict[str, str], version: str, what: str) -> str:
    wanted = minor(version)
    if wanted not in table:
        known = sorted(table, key=_key)
        raise VersionError(f"{what} {version} is not supported: podinfra knows {known[0]} to {known[-1]}")
    return table[wanted]


def pause_tag(kubernetes_version: str) -> str:
    """The pause tag kubeadm expects, e.g. ``pause_tag("1.31") == "3.10"``."""
    return _lookup(KUBERNETES_PAUSE, kubernetes_version, "Kubernetes")


def containerd_default_pause(containerd_version: str) -> str:
    """The pause tag a containerd line uses when its config names none."""
    return _lookup(CONTAINERD_PAUSE, containerd_version, "containerd")


def kubelet_takes_pause_flag(kubernetes_version: str) -> bool:
    pause_tag(kubernetes_version)
    return _key(minor(kubernetes_version)) < _key(KUBELET_FLAG_REMOVED)


def newest_kubernetes() -> str:
    return max(KUBERNETES_PAUSE, key=_key)
