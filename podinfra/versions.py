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
CONTAINERD_PAUSE = {
    "1.6": "3.6",
    "1.7": "3.8",
    "2.0": "3.10",
    "2.1": "3.10",
    "2.2": "3.10.1",
    "2.3": "3.10.2",
    "2.4": "3.10.2",  # v2.4.0-beta.0
}
# containerd 1.6.0 to 1.6.8 default to the old registry's name; registry.k8s.io from 1.6.9 on.
OLD_UPSTREAM = "k8s.gcr.io"
# From this Kubernetes minor on the kubelet refuses --pod-infra-container-image.
KUBELET_FLAG_REMOVED = "1.35"
# Kubernetes 1.35 is the last release that supports containerd 1.x (SIG Node, v1.35 release notes).
CONTAINERD_2_REQUIRED = "1.36"
# The io.cri-containerd.pinned label and the CRI's `pinned` field (image GC skips the image) came in
# containerd 1.6.22 and 1.7.3; every 2.x release has them.
PINS_FROM = {"1.6": (1, 6, 22), "1.7": (1, 7, 3)}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?$")
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[~+-][0-9A-Za-z.~+-]*)?$")  # Debian's too: 1.7.24~ds1-6


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
    major, minor_, _ = release(containerd_version)
    return _lookup(CONTAINERD_PAUSE, f"{major}.{minor_}", "containerd")


def containerd_default_sandbox(containerd_version: str) -> str:
    """The whole sandbox image a containerd release falls back to: ``containerd_default_sandbox("1.6.4")
    == "k8s.gcr.io/pause:3.6"``; ``containerd_default_sandbox("2.1.9") == "registry.k8s.io/pause:3.10"``."""
    tag = containerd_default_pause(containerd_version)
    return f"{OLD_UPSTREAM if release(containerd_version) < (1, 6, 9) else UPSTREAM}/pause:{tag}"


def release(version: str) -> tuple[int, int, int]:
    """``"1.7.24~ds1-6"`` -> ``(1, 7, 24)``: MAJOR.MINOR[.PATCH] with distribution suffixes dropped."""
    match = _RELEASE.match(version.strip())
    if not match:
        raise VersionError(f"{version!r} is not a version: write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.7.24")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def containerd_honours_pins(containerd_version: str) -> bool:
    """Whether this containerd's CRI reports ``pinned`` for (and its GC spares) a pinned-labelled image."""
    found = release(containerd_version)
    return found >= PINS_FROM.get(f"{found[0]}.{found[1]}", (0, 0, 0))


def containerd_supported(kubernetes_version: str, containerd_version: str) -> bool:
    """Whether Kubernetes supports this containerd: 1.x only up to Kubernetes 1.35."""
    return release(containerd_version)[0] >= 2 or _key(minor(kubernetes_version)) < _key(CONTAINERD_2_REQUIRED)


def kubelet_takes_pause_flag(kubernetes_version: str) -> bool:
    pause_tag(kubernetes_version)
    return _key(minor(kubernetes_version)) < _key(KUBELET_FLAG_REMOVED)


def newest_kubernetes() -> str:
    return max(KUBERNETES_PAUSE, key=_key)
