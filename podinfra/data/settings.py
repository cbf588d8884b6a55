"""Inventory data read from a host and checked before any host is touched, with the registry's TLS
material and htpasswd made from it (on the control host).

    settings = node_settings(host)      # NodeData: what deploys/node.py applies and the checks expect
    settings.pause                      # "3.10" for kubernetes_version "1.31" (or host data pause_tag)
"""

import contextlib
import difflib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pyinfra import logger
from pyinfra.api.exceptions import DeployError
from pyinfra.api.host import Host

from podinfra import versions
from podinfra.data import pki
from podinfra.data.models import DEFAULT_USERS, KEYS, GroupData, MirrorData, NodeData, PauseChoice, RegistryData
from podinfra.images.reference import Reference, parse

M = TypeVar("M", bound=BaseModel)


# pyinfra's own data (connectors, global arguments): never taken for a misspelt podinfra key.
_PYINFRA_PREFIXES = ("ssh_", "winrm_", "docker_", "dockerssh_", "chroot_", "podman_", "terraform_", "vagrant_", "_")


def _secret(model: type[BaseModel], name: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


def fail(host: Host, key: str, fix: str, value: object = None, show: bool = False) -> DeployError:
    shown = f"={value!r}" if show else ""
    return DeployError(f"host {host.name}: host data {key}{shown}: {fix}")


# Keys podinfra read once and no longer does, with what replaced them.
REMOVED = {
    "registry_insecure": "nodes always reach the local registry over HTTPS; for a registry whose certificate the "
    'nodes already trust, set registry_ca: "system"',
}


def misspelt(host: Host, data: Iterable[str]) -> None:
    """Refuse a key that is not podinfra's but nearly is one (``airgap_prob``), or no longer is one:
    silently ignored, it would turn a check off or a setting back to its default."""
    for name in data:
        if name in REMOVED:
            raise fail(host, name, f"no longer read: {REMOVED[name]}")
        if name in KEYS or name.startswith(_PYINFRA_PREFIXES):
            continue
        close = difflib.get_close_matches(name, KEYS, n=1, cutoff=0.85)
        if close:
            raise fail(host, name, f"not a podinfra key: did you mean {close[0]}?")


def read(model: type[M], host: Host) -> M:
    """`model` from the host's data; DeployError naming the first wrong key and its fix."""
    data: dict[str, Any] = host.data.dict()  # type: ignore[no-untyped-call]
    misspelt(host, data)
    given = {name: data[name] for name in model.model_fields if name in data and data[name] is not None}
    try:
        return model.model_validate(given)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0])
        field = model.model_fields[name]
        if first["type"] == "missing":
            raise fail(host, name, f"required: {field.description}") from None
        fix = str(first["msg"]).removeprefix("Value error, ")
        raise fail(host, name, fix, given.get(name), show=name in given and not _secret(model, name)) from None


def node_settings(host: Host) -> NodeData:
    """The node's data (:class:`NodeData`), checked; a ``pause_tag`` that overrides the catalogue is warned of."""
    _plan_podinfra_ca(host)
    settings = read(NodeData, host)
    warn_override(host, settings)
    return settings


def warn_override(host: Host, choice: PauseChoice) -> None:
    if choice.overridden:
        logger.warning(
            f"host {host.name}: host data pause_tag={choice.pause_tag!r} overrides the catalogue's "
            f"{choice.overridden} for Kubernetes {versions.minor(choice.kubernetes_version)}"
        )


def _plan_podinfra_ca(host: Host) -> None:
    """A node's ``registry_ca`` that is podinfra's CA in a ``podinfra_pki_dir`` of this inventory, not made
    yet: made now in the run's scratch PKI (which ``local_registry`` writes into that directory when the run
    executes), so that a run that makes the registry can plan its nodes too, whichever host it plans first."""
    value = host.data.get("registry_ca")
    if not isinstance(value, str) or value == "system" or Path(value).exists() or Path(value).name != "ca.crt":
        return
    default = RegistryData.model_fields["podinfra_pki_dir"].default
    hosts = getattr(host, "inventory", None) or [host]
    if any(Path(str(h.data.get("podinfra_pki_dir") or default)) == Path(value).parent for h in hosts):
        with contextlib.suppress(pki.PkiError):  # half a CA: registry_ca's own check says what to do
            pki.ensure_ca(pki.scratch(Path(value).parent))


@dataclass(frozen=True)
class RegistrySettings:
    """The registry host's data with its TLS material and htpasswd made (on the control host)."""

    port: int
    data_dir: str
    address: str
    cert: Path  # on the control host, like key, ca and htpasswd
    key: Path
    ca: Path | None
    htpasswd: Path
    users: dict[str, str]
    push_user: str
    pki_dir: Path | None = None  # podinfra_pki_dir, which this run's scratch PKI is written into

    @property
    def pending(self) -> list[Path]:
        """The files of podinfra_pki_dir that the run writes (a new CA, certificate, users)."""
        return pki.pending(self.pki_dir) if self.pki_dir else []

    @property
    def url(self) -> str:
        """``https://ADDRESS:PORT``, an IPv6 address in brackets."""
        host_part = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host_part}:{self.port}"


def registry_settings(host: Host) -> RegistrySettings:
    """Read and check all data first, then make (or reuse) the CA, certificate and htpasswd: in a scratch
    copy of podinfra_pki_dir, which ``local_registry`` writes into it when the run executes."""
    data = read(RegistryData, host)
    address = data.registry_address or host.data.get("ssh_hostname") or host.name
    pki_dir = Path(data.podinfra_pki_dir)
    work = pki.scratch(pki_dir)  # written into pki_dir when the run executes (pki.commit), never by --dry
    host_dir = work / host.name
    if data.registry_tls == "provided":
        cert, key_file = data.registry_tls_cert, data.registry_tls_key
        if cert is None or key_file is None:
            missing = "registry_tls_cert" if cert is None else "registry_tls_key"
            raise fail(host, missing, 'registry_tls is "provided": give the path of a PEM file on the control host')
        try:
            pki.check_cert_and_key(cert, key_file)
        except pki.PkiError as e:
            raise fail(host, "registry_tls_key", str(e), str(key_file), show=True) from None
        ca = data.registry_tls_ca
    else:
        names, ips = [host.name], list[str]()
        try:
            ips.append(str(ipaddress.ip_address(address)))
        except ValueError:
            names.append(address)
        try:
            ca, ca_key = pki.ensure_ca(work)
            cert, key_file = pki.ensure_server_cert(host_dir, (ca, ca_key), names, ips)
        except pki.PkiError as e:
            reason = str(e).replace(str(work), str(pki_dir))  # the operator's paths, not the scratch copy's
            raise fail(host, "podinfra_pki_dir", reason, data.podinfra_pki_dir, show=True) from None
    users = data.registry_users or pki.ensure_passwords(host_dir / "users.json", DEFAULT_USERS)
    if data.registry_push_user not in users:
        raise fail(host, "registry_push_user", f"name a user of registry_users ({', '.join(sorted(users))})")
    htpasswd = pki.ensure_htpasswd(host_dir / "htpasswd", users, data.registry_push_user)
    return RegistrySettings(
        data.registry_port,
        data.registry_data_dir,
        address,
        cert,
        key_file,
        ca,
        htpasswd,
        dict(users),
        data.registry_push_user,
        pki_dir,
    )


@dataclass(frozen=True)
class MirrorSettings:
    """What `deploys/mirror.py` copies, from where, to which repository prefix."""

    images: tuple[Reference, ...]
    source: str
    source_insecure: bool
    source_ca: Path | None
    prefix: str


def mirror_settings(host: Host, pause_tags: Iterable[str] = ()) -> MirrorSettings:
    """The pause tags of the nodes (`pause_tags`, several for a fleet mid-upgrade: :func:`node_pause_tags`)
    and of the host's own ``kubernetes_version`` (or ``pause_tag``) when set, plus ``mirror_images``."""
    data = read(MirrorData, host)
    own = [pause_choice(host).pause] if host.data.get("kubernetes_version") is not None else []
    wanted = {*pause_tags, *own}
    if not wanted:
        raise fail(host, "kubernetes_version", "required: no node names a Kubernetes version, and this host does not")
    tags = sorted(wanted, key=_tag_order)
    images = [parse(f"{versions.UPSTREAM}/pause:{tag}") for tag in tags] + [parse(i) for i in data.mirror_images]
    return MirrorSettings(
        tuple(dict.fromkeys(images)), data.pause_source, data.pause_source_insecure, data.pause_source_ca,
        data.registry_prefix,
    )  # fmt: skip


def _tag_order(tag: str) -> tuple[tuple[int, str], ...]:
    # 3.9 before 3.10; a tag that is not dotted numbers sorts by its text
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in tag.split("."))


def pause_choice(host: Host) -> PauseChoice:
    """The host's ``kubernetes_version`` and ``pause_tag`` alone, checked (the mirror reads only these)."""
    choice = read(PauseChoice, host)
    warn_override(host, choice)
    return choice


def node_pause_tags(hosts: Iterable[Host]) -> list[str]:
    """Each node's pause tag (a fleet mid-upgrade runs several)."""
    return [pause_choice(node).pause for node in hosts]


def groups(host: Host) -> GroupData:
    return read(GroupData, host)
