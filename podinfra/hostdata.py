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
    source: Any = host.data.get("pause_source", "registry.k8s.io")
    insecure: Any = host.data.get("pause_source_insecure", False)
    prefix: Any = host.data.get("registry_prefix", "")
    try:
        split_registry(source if isinstance(source, str) else "")
        split_registry(f"x/{prefix}" if prefix else "x")
    except ReferenceError as e:
        raise fail(host, "pause_source or registry_prefix", str(e)) from None
    if not isinstance(insecure, bool):
        raise fail(host, "pause_source_insecure", "use true or false", insecure)
    return MirrorSettings(
        tuple(dict.fromkeys(images)), source, insecure, control_file(host, "pause_source_ca"), str(prefix).strip("/")
    )
