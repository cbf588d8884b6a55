"""Inventory data podinfra reads, every key described once as a typed model.

From the models come: validation (pyinfra's DeployError naming the host, the key and the fix;
values that may be secrets are never shown), "did you mean" for misspelt keys, numbers given for
versions refused with "quote it", and the README's table of keys (``python -m podinfra.data.models``
prints it; a unit test keeps the README equal to it).
(read from a host by :mod:`podinfra.data.settings`).
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from podinfra import versions
from podinfra.data.fields import (
    ControlFile,
    Flag,
    Name,
    NodePath,
    Prefix,
    RegistryHost,
    VersionText,
    _ca,
    _host_port,
    _image,
    _images,
    _is,
    _node_path,
    _pause_tag,
    _registries,
    _secret_field,
    _socket,
    _users,
    _v,
    count_or_share,
)
from podinfra.data.shares import of_fleet
from podinfra.images import probe_image
from podinfra.images.reference import under

# Where the node deploy puts the registry CA on every node; the checks look for it there.
NODE_CA = "/etc/podinfra/registry-ca.crt"
DEFAULT_USERS = ("pull", "push")
M = TypeVar("M", bound=BaseModel)


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True)


class PauseChoice(_Data):
    """The node's Kubernetes minor and the pause tag it takes: the catalogue's, or ``pause_tag``."""

    kubernetes_version: VersionText = Field(
        description='The node\'s Kubernetes minor, e.g. "1.31": it picks the pause tag (`podinfra versions`).'
    )
    pause_tag: str | None = Field(
        None,
        validate_default=True,
        description="The pause tag for a minor podinfra's catalogue lacks (`kubeadm config images list`); "
        "over a known minor's tag, a warning.",
    )

    @field_validator("pause_tag", mode="before")
    @classmethod
    def _known_minor_or_tag(cls, value: Any, info: ValidationInfo) -> str | None:
        try:
            return _pause_tag(value, info)
        except (TypeError, versions.VersionError) as error:
            raise ValueError(str(error)) from None

    @property
    def pause(self) -> str:
        """The pause tag the node takes: ``pause_tag`` when given, else the catalogue's for its minor."""
        return self.pause_tag or versions.pause_tag(self.kubernetes_version)

    @property
    def overridden(self) -> str | None:
        """The catalogue's tag that ``pause_tag`` replaces for a minor the catalogue knows (a warning), else None."""
        if self.pause_tag is None or not versions.in_catalogue(self.kubernetes_version):
            return None
        known = versions.pause_tag(self.kubernetes_version)
        return known if known != self.pause_tag else None


class NodeData(PauseChoice):
    """Host data of the nodes (``podinfra_node_group``): what ``deploys/node.py`` applies and the checks expect."""

    local_registry: RegistryHost = Field(description="HOST[:PORT] of the registry the nodes pull from.")
    registry_ca: Annotated[
        Path | Literal["system"],
        _v(
            _ca, "give the path of the registry's CA file on the control host, or \"system\" for the nodes' trust store"
        ),
    ] = Field(description='CA file (on the control host) of the local registry; "system": the nodes\' trust store.')
    registry_prefix: Prefix = Field(
        "", description="Repository prefix the images are kept under in the local registry."
    )
    sandbox_image_mode: Annotated[
        Literal["canonical", "local"], _v(lambda v: v in ("canonical", "local"), 'use "canonical" or "local"')
    ] = Field(
        "canonical",
        description='"canonical": nodes keep registry.k8s.io/pause:TAG, hosts.toml sends it to the local registry; '
        '"local": the sandbox image is the local reference, pinned by digest.',
    )
    registry_pull_user: Name = Field(
        "pull", description="The nodes' registry user (read-only with deploys/registry.py)."
    )
    registry_pull_password: Annotated[str | None, _v(_is(str), "use a string")] = _secret_field(
        None, "Its password; unset: anonymous pulls."
    )
    mirrored_registries: Annotated[
        list[str], _v(_registries, 'use a list of registry hosts, e.g. ["registry.k8s.io"]')
    ] = Field(["registry.k8s.io"], description="Registries whose pulls go to the local registry (a hosts.toml each).")
    containerd_config: NodePath | None = Field(
        None, description="containerd's config file; unset: the file the running daemon was started with."
    )
    containerd_certs_dir: NodePath = Field(
        "/etc/containerd/certs.d", description="containerd's registry config_path (a hosts.toml per registry)."
    )
    kubelet_flags_file: NodePath = Field(
        "/var/lib/kubelet/kubeadm-flags.env", description="kubeadm's kubelet flags file."
    )
    kubelet_flags_create: Flag = Field(
        False, description="Write the kubelet flags file also where no kubelet is installed (yet)."
    )
    restart_batch: Annotated[
        int | str, _v(count_or_share(1), 'use a whole number of nodes, 1 or more, or a share of the fleet: "10%"')
    ] = Field(
        1,
        description="Nodes whose runtime (and kubelet) restart at once: a number, or a share of the run's hosts "
        '("10%", rounded down, at least 1, as Kubespray\'s serial).',
    )
    max_failed_nodes: Annotated[
        int | str, _v(count_or_share(0), 'use a whole number, 0 or more, or a share of the fleet: "5%"')
    ] = Field(
        0,
        description="Nodes that may fail to restart before later batches are left alone: a number, or a share of "
        'the run\'s hosts ("5%", rounded down).',
    )
    old_pause: Annotated[
        Literal["unpin", "remove", "keep"],
        _v(lambda v: v in ("unpin", "remove", "keep"), 'use "unpin", "remove" or "keep"'),
    ] = Field("unpin", description="After an upgrade, what becomes of the previous pause once no sandbox runs it.")
    pause_digest: Annotated[
        str | None,
        _v(lambda v: _is(str)(v) and v.startswith("sha256:") and len(v) == 71, "use sha256: and 64 hex digits"),
    ] = Field(None, description="Checks: the pause digest nodes must hold; unset: the local registry's.")
    airgap_probe: Annotated[str | None, _v(_host_port, "give the upstream HOST:PORT as the node would reach it")] = (
        Field(None, description="Checks: an upstream HOST:PORT the node must not reach; unset: not checked (WARN).")
    )
    check_probe_image: Annotated[
        str | Literal[False], _v(lambda v: v is False or _image(v), "give an image reference, or false")
    ] = Field(
        probe_image.REFERENCE,
        description="Checks: the static busybox image check 8 runs beside pause (`podinfra probe-image`); "
        "false: check 8 is not run (INFO).",
    )
    check_probe_timeout: Annotated[float, _v(lambda v: _is(int, float)(v) and v > 0, "use seconds, more than 0")] = (
        Field(
            30.0,
            description="Checks: seconds each check may wait for a condition (the registry's answer, a probe Ready, "
            "pause as PID 1, an orphan reaped) and each CRI call; past it the check WARNs, naming the wait.",
        )
    )
    cri_socket: Annotated[str | None, _v(_socket, "give the runtime's socket on the node as unix:///PATH or /PATH")] = (
        Field(
            None,
            description="The CRI socket of the runtime the node runs (unix:///PATH or /PATH): says which where "
            "containerd and CRI-O both run; unset: the runtime found on the node (docs/crio.md).",
        )
    )

    def restart_nodes(self, fleet: int) -> int:
        """Nodes restarted at once in a run over `fleet` hosts (``restart_batch``)."""
        return of_fleet(self.restart_batch, fleet, 1)

    def failed_nodes_allowed(self, fleet: int) -> int:
        """Failed restarts a run over `fleet` hosts goes on after (``max_failed_nodes``)."""
        return of_fleet(self.max_failed_nodes, fleet, 0)

    @property
    def pause_repository(self) -> str:
        """The pause repository in the local registry, e.g. "pause" or "k8s/pause"."""
        return under(self.registry_prefix, "pause")

    @property
    def hosts_toml(self) -> dict[str, str]:
        """Registry -> the hosts.toml containerd resolves it by: each mirrored registry, and the local
        registry itself."""
        registries = (*self.mirrored_registries, self.local_registry)
        return {upstream: f"{self.containerd_certs_dir}/{upstream}/hosts.toml" for upstream in registries}

    @property
    def ca(self) -> Path | None:
        """The CA file on the control host; None for the system trust store."""
        return None if self.registry_ca == "system" else self.registry_ca

    @property
    def pull_credentials(self) -> tuple[str, str] | None:
        return (self.registry_pull_user, self.registry_pull_password) if self.registry_pull_password else None

    def pause_digest_in_registry(self, phase: str = "plan") -> str:
        """The digest the local registry holds for the pause tag, asked once a run and phase (RegistryError
        if not)."""
        from podinfra.images.registry import tag_digest  # requests: only for the callers that ask

        user, password = self.pull_credentials or (None, None)
        ca = str(self.ca) if self.ca else None
        url = f"https://{self.local_registry}"
        return tag_digest(url, self.pause_repository, self.pause, ca, user, password, phase)

    def sandbox_image(self, digest: str | None) -> str:
        """The reference the runtime is told: the canonical name, or ("local" mode) the local
        reference, pinned by `digest` when it is known."""
        if self.sandbox_image_mode == "canonical":
            return f"{versions.UPSTREAM}/pause:{self.pause}"
        local = f"{self.local_registry}/{self.pause_repository}:{self.pause}"
        return f"{local}@{digest}" if digest else local

    def __repr_args__(self) -> Any:  # passwords stay out of repr
        return [(k, "***" if k == "registry_pull_password" and v else v) for k, v in super().__repr_args__()]


class RegistryData(_Data):
    """Host data of the local registry's host (``podinfra_registry_group``): deploys/registry.py and mirror.py."""

    registry_port: Annotated[
        int, _v(lambda v: _is(int)(v) and 1 <= v <= 65535, "use a port number from 1 to 65535")
    ] = Field(5000, description="The registry answers nodes on HTTPS port PORT.")
    registry_data_dir: Annotated[
        str, _v(lambda v: bool(_node_path(v)) and v.rstrip("/") != "", "use an absolute path other than /")
    ] = Field("/var/lib/docker-registry", description="Where blobs and manifests are stored on the host.")
    registry_address: Annotated[
        str | None,
        _v(lambda v: _is(str)(v) and bool(v) and "/" not in v, "use the IP address or DNS name nodes reach it at"),
    ] = Field(None, description="The address nodes pull from (in the certificate); unset: ssh_hostname, or the name.")
    podinfra_pki_dir: Annotated[
        str, _v(lambda v: _is(str)(v) and Path(v).is_absolute(), "use an absolute path on the control host")
    ] = Field(
        "/var/lib/podinfra/pki",
        description="On the control host: podinfra's CA and, per registry host, certificate, htpasswd, users.json.",
    )
    registry_users: Annotated[
        dict[str, str] | None, _v(_users, 'use a mapping of user to password, e.g. {"pull": "..."}')
    ] = _secret_field(None, "{user: password}; unset: pull and push with random passwords in PKI_DIR/HOST/users.json.")
    registry_push_user: Name = Field(
        "push", description="The one user that may push (deploys/mirror.py copies as it); the others only pull."
    )
    registry_tls: Annotated[
        Literal["podinfra", "provided"],
        _v(lambda v: v in ("podinfra", "provided"), 'use "podinfra" (certificate from podinfra\'s CA) or "provided"'),
    ] = Field("podinfra", description='"podinfra": a certificate from podinfra\'s CA; "provided": the two below.')
    registry_tls_cert: ControlFile | None = Field(
        None, description="With registry_tls provided: the PEM certificate (and chain) on the control host."
    )
    registry_tls_key: ControlFile | None = Field(None, description="With registry_tls provided: its PEM key.")
    registry_tls_ca: ControlFile | None = Field(
        None, description="With registry_tls provided: the CA the health check verifies; unset: the trust store."
    )


class MirrorData(_Data):
    """Host data of the local registry's host read by ``deploys/mirror.py``, besides the nodes' versions."""

    pause_source: RegistryHost = Field(
        versions.UPSTREAM, description="Where registry.k8s.io images are read from (a mirror of it, or itself)."
    )
    pause_source_insecure: Flag = Field(False, description="Plain HTTP to pause_source.")
    pause_source_ca: ControlFile | None = Field(None, description="CA file for pause_source's TLS.")
    registry_prefix: Prefix = Field("", description="Repository prefix in the local registry.")
    mirror_images: Annotated[list[str], _v(_images, "use a list of image references")] = Field(
        [], description="More images to copy into the local registry (beside pause and the check's probe)."
    )


class GroupData(_Data):
    """Which inventory groups the deploy files and ``podinfra check`` act on."""

    podinfra_node_group: Name = Field("nodes", description="The nodes' group.")
    podinfra_registry_group: Name = Field("registry", description="The local registry's group.")


MODELS = (NodeData, RegistryData, MirrorData, GroupData)
KEYS = {name for model in MODELS for name in model.model_fields}
_READ_BY: dict[type[BaseModel], str] = {
    NodeData: "nodes",
    RegistryData: "registry",
    MirrorData: "registry (mirror)",
    GroupData: "all hosts",
}


def keys_table() -> str:
    """The README's table of inventory data keys, from the models."""
    rows = ["| key | hosts | default | what |", "| --- | --- | --- | --- |"]
    for model, hosts in _READ_BY.items():
        for name, field in model.model_fields.items():
            if model is MirrorData and name in NodeData.model_fields:
                continue  # the same key, described once
            default = (
                "required"
                if field.is_required()
                else "-"
                if field.default is None
                else f"`{json.dumps(field.default)}`"
            )
            rows.append(f"| `{name}` | {hosts} | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(keys_table())
