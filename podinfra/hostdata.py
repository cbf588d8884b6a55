"""Inventory data podinfra reads, checked in one place before any host is touched.

Every reader raises pyinfra's DeployError naming the host, the data key and the fix; values that
may be secrets are never shown.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pyinfra.api.exceptions import DeployError
from pyinfra.api.host import Host

from podinfra import pki, versions
from podinfra.reference import Reference, ReferenceError, parse, split_registry
from podinfra.settings import NodeSettings

DEFAULT_USERS = ("pull", "push")


@dataclass(frozen=True)
class RegistrySettings:
    port: int
    data_dir: str
    address: str
    cert: Path  # on the control host, like key, ca and htpasswd
    key: Path
    ca: Path | None
    htpasswd: Path
    users: dict[str, str]


_HIDDEN = object()


def fail(host: Host, key: str, fix: str, value: object = _HIDDEN) -> DeployError:
    shown = "" if value is _HIDDEN else f"={value!r}"
    return DeployError(f"host {host.name}: host data {key}{shown}: {fix}")


def control_file(host: Host, key: str) -> Path | None:
    value = host.data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        raise fail(host, key, "give the path of an existing file on the control host", value)
    return Path(value)


def registry_settings(host: Host) -> RegistrySettings:
    """Read and check all data first, so that a mistake costs nothing but the message."""
    port: Any = host.data.get("registry_port", 5000)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail(host, "registry_port", "use a port number from 1 to 65535", port)
    data_dir: Any = host.data.get("registry_data_dir", "/var/lib/docker-registry")
    if not isinstance(data_dir, str) or not PurePosixPath(data_dir).is_absolute() or data_dir.rstrip("/") == "":
        raise fail(host, "registry_data_dir", "use an absolute path other than /", data_dir)
    address: Any = host.data.get("registry_address") or host.data.get("ssh_hostname") or host.name
    if not isinstance(address, str) or not address or "/" in address:
        raise fail(host, "registry_address", "use the IP address or DNS name nodes reach the registry at", address)
    pki_dir: Any = host.data.get("podinfra_pki_dir", "/var/lib/podinfra/pki")
    if not isinstance(pki_dir, str) or not Path(pki_dir).is_absolute():
        raise fail(host, "podinfra_pki_dir", "use an absolute path on the control host", pki_dir)
    host_dir = Path(pki_dir) / host.name

    users: Any = host.data.get("registry_users")
    if users is not None:
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in [*users, *users.values()]):
            raise fail(host, "registry_users", 'use a mapping of user to password, e.g. {"pull": "..."}')
        try:
            pki.check_htpasswd_users(users)
        except pki.PkiError as e:
            raise fail(host, "registry_users", str(e)) from None

    tls: Any = host.data.get("registry_tls", "podinfra")
    if tls == "provided":
        cert, key = control_file(host, "registry_tls_cert"), control_file(host, "registry_tls_key")
        if cert is None or key is None:
            missing = "registry_tls_cert" if cert is None else "registry_tls_key"
            raise fail(host, missing, 'registry_tls is "provided": give the path of a PEM file on the control host')
        try:
            pki.check_cert_and_key(cert, key)
        except pki.PkiError as e:
            raise fail(host, "registry_tls_key", str(e), str(key)) from None
        ca = control_file(host, "registry_tls_ca")
    elif tls == "podinfra":
        names, ips = [host.name], list[str]()
        try:
            ips.append(str(ipaddress.ip_address(address)))
        except ValueError:
            names.append(address)
        try:
            ca, ca_key = pki.ensure_ca(Path(pki_dir))
            cert, key = pki.ensure_server_cert(host_dir, (ca, ca_key), names, ips)
        except pki.PkiError as e:
            raise fail(host, "podinfra_pki_dir", str(e), pki_dir) from None
    else:
        raise fail(host, "registry_tls", 'use "podinfra" (certificate from podinfra\'s CA) or "provided"', tls)

    if users is None:
        users = pki.ensure_passwords(host_dir / "users.json", DEFAULT_USERS)
    htpasswd = pki.ensure_htpasswd(host_dir / "htpasswd", users)
    return RegistrySettings(port, data_dir, address, cert, key, ca, htpasswd, dict(users))


def _registry_host(host: Host, key: str, default: str | None = None) -> str:
    value: Any = host.data.get(key, default)
    if not isinstance(value, str):
        raise fail(host, key, "give the registry as HOST[:PORT]", value)
    try:
        registry, path = split_registry(value)
    except ReferenceError as e:
        raise fail(host, key, str(e)) from None
    if path:
        raise fail(host, key, "give HOST[:PORT] only; a repository prefix goes in registry_prefix", value)
    return registry


def _prefix(host: Host) -> str:
    value: Any = host.data.get("registry_prefix", "")
    if not isinstance(value, str):
        raise fail(host, "registry_prefix", "use a repository path such as mirror/k8s", value)
    try:
        split_registry(f"x/{value}" if value.strip("/") else "x")
    except ReferenceError:
        raise fail(host, "registry_prefix", "use lowercase path components such as mirror/k8s", value) from None
    return value.strip("/")


def kubernetes_version(host: Host) -> str:
    """``kubernetes_version``: the cluster's Kubernetes minor, e.g. "1.31"; it picks the pause tag."""
    value: Any = host.data.get("kubernetes_version")
    if not isinstance(value, str):
        raise fail(host, "kubernetes_version", 'set it to the cluster\'s version, e.g. "1.31"', value)
    try:
        versions.pause_tag(value)
    except versions.VersionError as e:
        raise fail(host, "kubernetes_version", str(e)) from None
    return value


@dataclass(frozen=True)
class MirrorSettings:
    """What `deploys/mirror.py` copies, from where, to which repository prefix."""

    images: tuple[Reference, ...]
    source: str
    source_insecure: bool
    source_ca: Path | None
    prefix: str


def mirror_settings(host: Host) -> MirrorSettings:
    """``pause_source`` ("registry.k8s.io"): where registry.k8s.io images are read from;
    ``pause_source_insecure`` (False): plain HTTP to it; ``pause_source_ca``: its CA file;
    ``registry_prefix`` (""): repository prefix in the local registry; ``mirror_images`` ([]):
    more image references to copy."""
    pause = parse(f"registry.k8s.io/pause:{versions.pause_tag(kubernetes_version(host))}")
    extra: Any = host.data.get("mirror_images", [])
    if not isinstance(extra, list) or not all(isinstance(i, str) for i in extra):
        raise fail(host, "mirror_images", "use a list of image references", extra)
    try:
        images = (pause, *(parse(i) for i in extra))
    except ReferenceError as e:
        raise fail(host, "mirror_images", str(e)) from None
    source = _registry_host(host, "pause_source", "registry.k8s.io")
    prefix = _prefix(host)
    insecure: Any = host.data.get("pause_source_insecure", False)
    if not isinstance(insecure, bool):
        raise fail(host, "pause_source_insecure", "use true or false", insecure)
    return MirrorSettings(tuple(dict.fromkeys(images)), source, insecure, control_file(host, "pause_source_ca"), prefix)


def _text(host: Host, key: str, default: str, absolute: bool = False) -> str:
    value: Any = host.data.get(key, default)
    if not isinstance(value, str) or not value or (absolute and not PurePosixPath(value).is_absolute()):
        raise fail(host, key, "use an absolute path" if absolute else "use a non-empty string", value)
    return value


def node_settings(host: Host) -> NodeSettings:
    """Host data for nodes, with defaults:

    ``kubernetes_version`` (required); ``local_registry`` (required, HOST:PORT of the registry
    nodes pull from); ``registry_prefix`` (""); ``sandbox_image_mode`` ("canonical": nodes keep
    ``registry.k8s.io/pause:TAG`` and hosts.toml sends it to the local registry; "local": the
    sandbox image is rewritten to the local reference, pinned by digest when known);
    ``registry_ca`` (CA file on the control host; required unless ``registry_insecure``);
    ``registry_pull_user`` ("pull") and ``registry_pull_password`` (none: anonymous pulls);
    ``mirrored_registries`` (["registry.k8s.io"]); ``containerd_config``
    ("/etc/containerd/config.toml"); ``containerd_certs_dir`` ("/etc/containerd/certs.d");
    ``kubelet_flags_file`` ("/var/lib/kubelet/kubeadm-flags.env"); ``restart_batch`` (1 node at a time);
    ``max_failed_nodes`` (0: the first node whose containerd fails to come back stops the rollout).
    """
    version = kubernetes_version(host)
    registry = _registry_host(host, "local_registry")
    prefix = _prefix(host)
    mode: Any = host.data.get("sandbox_image_mode", "canonical")
    if mode not in ("canonical", "local"):
        raise fail(host, "sandbox_image_mode", 'use "canonical" or "local"', mode)
    insecure: Any = host.data.get("registry_insecure", False)
    if not isinstance(insecure, bool):
        raise fail(host, "registry_insecure", "use true or false", insecure)
    ca = control_file(host, "registry_ca")
    if ca is None and not insecure:
        raise fail(host, "registry_ca", "the local registry uses TLS: give its CA file (on the control host)")
    if ca is not None:
        try:
            pki.check_certificate(ca)
        except pki.PkiError as e:
            raise fail(host, "registry_ca", str(e), str(ca)) from None
    password: Any = host.data.get("registry_pull_password")
    if password is not None and not isinstance(password, str):
        raise fail(host, "registry_pull_password", "use a string")
    mirrored: Any = host.data.get("mirrored_registries", ["registry.k8s.io"])
    if not isinstance(mirrored, list) or not mirrored or not all(isinstance(m, str) for m in mirrored):
        raise fail(host, "mirrored_registries", 'use a list of registry hosts, e.g. ["registry.k8s.io"]', mirrored)
    batch: Any = host.data.get("restart_batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise fail(host, "restart_batch", "use a whole number of nodes, 1 or more", batch)
    allowed: Any = host.data.get("max_failed_nodes", 0)
    if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 0:
        raise fail(host, "max_failed_nodes", "use a whole number, 0 or more", allowed)
    return NodeSettings(
        kubernetes_version=version,
        pause_tag=versions.pause_tag(version),
        registry=registry,
        prefix=prefix,
        mode=mode,
        ca=ca,
        pull_user=_text(host, "registry_pull_user", "pull") if password else None,
        pull_password=password,
        mirrored=tuple(mirrored),
        containerd_config=_text(host, "containerd_config", "/etc/containerd/config.toml", absolute=True),
        certs_dir=_text(host, "containerd_certs_dir", "/etc/containerd/certs.d", absolute=True),
        kubelet_flags_file=_text(host, "kubelet_flags_file", "/var/lib/kubelet/kubeadm-flags.env", absolute=True),
        restart_batch=batch,
        max_failed_nodes=allowed,
    )
