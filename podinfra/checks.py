"""What `podinfra check` proves on a node: the catalogue of checks, what a node must show, and
one check's result. Shared by the command (`podinfra.check`) and the node suite (`tests/node`),
which runs once per node and so imports nothing heavy from here (no pyinfra, no requests).

>>> catalogue("2").name
'config'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from podinfra.settings import NodeSettings

PROBE_NAMESPACE = "podinfra-check"
# Every probe sandbox carries this label and namespace; leftovers are found by both, never by one alone.
PROBE_LABELS = {"app.kubernetes.io/managed-by": "podinfra-check"}
DEFAULT_PROBE_IMAGE = "registry.k8s.io/podinfra/probe:1"
STATUSES = ("pass", "fail", "skip")


@dataclass(frozen=True)
class Check:
    """One named check: what it proves and what to do when it fails."""

    id: str
    name: str
    description: str
    remediation: str


CHECKS = (
    Check(
        "1",
        "runtime",
        "The container runtime answers on its CRI socket (name and version)",
        "Start the runtime (systemctl start containerd, or crio) and look at its log (journalctl -u containerd); "
        "the socket must be /run/containerd/containerd.sock (containerd) or /var/run/crio/crio.sock (CRI-O), "
        "or set the node's cri_socket data.",
    ),
    Check(
        "2",
        "config",
        "The runtime's effective config names the expected sandbox image, at the key paths of its version",
        "Run deploys/node.py for this node: it sets the sandbox image at the key path of the runtime's config "
        "version, removes keys the runtime ignores, and restarts the runtime. An `imports` drop-in that overrides "
        "the sandbox image must go.",
    ),
    Check(
        "3",
        "mirror",
        "hosts.toml sends pulls of the mirrored registries to the local registry only, CA present",
        "Run deploys/node.py for this node: it writes certs.d/REGISTRY/hosts.toml with `server` = the local "
        "registry (so nothing falls back to the public registry), the registry CA, and containerd's config_path.",
    ),
    Check(
        "4",
        "kubelet",
        "kubelet --pod-infra-container-image is the sandbox image below Kubernetes 1.35 and absent from 1.35",
        "Run deploys/node.py for this node (it edits the kubelet flags file), then restart the kubelet.",
    ),
    Check(
        "5",
        "pause",
        "The pause image is in the runtime's image store with the expected digest, and pinned",
        "Run deploys/node.py for this node: it pulls the pause image from the local registry and pins it. "
        "A wrong digest means the local registry holds another image under that tag: mirror it again.",
    ),
    Check(
        "6",
        "registry",
        "The node resolves the pause manifest at its mirror, and cannot reach the upstream when air-gapped",
        "Mirror the pause image into the registry the node's hosts.toml names (deploys/mirror.py or "
        "`podinfra mirror`), or point hosts.toml at the registry that holds it (deploys/node.py).",
    ),
    Check(
        "7",
        "sandbox",
        "A probe sandbox becomes Ready from the expected pause image (by digest), gets a pod IP, and is removed",
        "Read the runtime's log for the probe sandbox (journalctl -u containerd); CNI errors mean the node's "
        "network plugin config is missing (/etc/cni/net.d).",
    ),
    Check(
        "8",
        "namespaces",
        "Pause holds the pod: PID 1 reaping orphans, the pod IP in the app container and kept across its restart, "
        "stopping the sandbox stops its containers",
        "Use the upstream pause image (or one built from its source): the sandbox image must reap children and "
        "hold the network namespace. Mirror the probe image (check_probe_image) into the local registry.",
    ),
)
_BY_ID = {check.id: check for check in CHECKS}


def catalogue(check_id: str) -> Check:
    """The check with this id: ``catalogue("2").name == "config"``."""
    return _BY_ID[check_id]


@dataclass(frozen=True)
class Expectations:
    """What a node must show, from its inventory data (``node_settings``) and the local registry.

    ``sandbox_image``: what the runtime config names; ``store_name``: the name its image store files it
    under (a digest drops the tag); ``digest``: the pause index digest, from host data ``pause_digest``
    or, when unset, asked of the local registry from here.
    """

    settings: NodeSettings
    sandbox_image: str
    store_name: str
    mirror_for: str
    repository: str
    digest: str | None
    digest_source: str
    airgap_probe: str | None
    probe_image: str | None
    probe_timeout: float
    cri_socket: str | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: `podinfra check` hands it to each node's run in a file of its private
        working directory (the pull password is in it)."""
        data = asdict(self)
        data["settings"]["ca"] = str(self.settings.ca) if self.settings.ca else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Expectations:
        settings = dict(data["settings"])
        settings["ca"] = Path(settings["ca"]) if settings["ca"] else None
        settings["mirrored"] = tuple(settings["mirrored"])
        return cls(**{**data, "settings": NodeSettings(**settings)})


@dataclass
class CheckResult:
    """One check on one node, as the suite records it."""

    id: str
    name: str
    description: str
    status: str  # pass, fail or skip
    expected: str = ""
    actual: str = ""
    remediation: str = ""
    duration: float = 0.0
