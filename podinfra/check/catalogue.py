"""What `podinfra check` proves on a node: the catalogue of checks, what a node must show, and one
check's result. Shared by the command (`podinfra.check.command`) and the node suite (`podinfra.suite`).

Statuses are kube-bench's: PASS, FAIL, WARN (not proved: the check could not run, or passed only by
a stated exception) and INFO (nothing to prove here, or facts worth knowing).

>>> catalogue("2").name
'config'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podinfra import versions
from podinfra.data.models import NodeData
from podinfra.images.reference import cri_name
from podinfra.images.registry import RegistryError

PROBE_NAMESPACE = "podinfra-check"
# Every probe sandbox carries this label and namespace; leftovers are found by both, never by one alone.
PROBE_LABELS = {"app.kubernetes.io/managed-by": "podinfra-check"}
STATUSES = ("pass", "fail", "warn", "info")


@dataclass(frozen=True)
class Check:
    """One named check: what it proves and what to do when it fails."""

    id: str
    name: str
    description: str
    remediation: str

    def result(self, status: str = "pass", **fields: Any) -> CheckResult:
        """A result of this check on a node; its remediation the catalogue's unless `fields` give one."""
        return CheckResult(self.id, self.name, self.description, status, **{"remediation": self.remediation, **fields})


CHECKS = (
    Check(
        "1",
        "runtime",
        "The container runtime answers on its CRI socket, in a release the node's Kubernetes supports",
        "Start the runtime (systemctl start containerd, or crio) and look at its log (journalctl -u containerd); "
        "the socket must be /run/containerd/containerd.sock (containerd) or /var/run/crio/crio.sock (CRI-O), "
        "or set the node's cri_socket data.",
    ),
    Check(
        "2",
        "config",
        "The running runtime uses the expected sandbox image: its effective config names it at its version's key "
        "path, and no file it reads changed after it started",
        "Run deploys/node.py for this node: it sets the sandbox image at the key path of the config version, "
        "removes keys the runtime ignores, and restarts the runtime whenever its files are newer than the daemon. "
        "An `imports` drop-in that overrides the sandbox image must go.",
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
        "Run deploys/node.py for this node: it edits the kubelet flags file and restarts the kubelet.",
    ),
    Check(
        "5",
        "pause",
        "The pause image is in the runtime's image store with the expected digest, and pinned against image GC",
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
        "hold the network namespace.",
    ),
    Check(
        "9",
        "running",
        "Running pod sandboxes use the expected pause image (others are left from before an upgrade)",
        "Nothing to do at once: sandboxes keep their pause until their pods are recreated (drain the node, or "
        "roll the workloads); deploys/node.py unpins the old pause once no sandbox runs it.",
    ),
)
# With `podinfra check --upgrade-to VERSION` only: what breaks if the node moves to VERSION. Nothing changes.
UPGRADE_CHECKS = (
    Check(
        "10",
        "target pause",
        "The target version's pause tag is in the local registry, by digest, for this node's credentials",
        "Mirror it before the upgrade: set the nodes' kubernetes_version to the target and run deploys/mirror.py, "
        "or `podinfra mirror --kubernetes-version VERSION`.",
    ),
    Check(
        "11",
        "target runtime",
        "The node's containerd line supports the target Kubernetes version",
        "Upgrade containerd on this node to a 2.x line before its kubelet moves to the target version.",
    ),
    Check(
        "12",
        "target config",
        "The config version the node's containerd line reads (INFO)",
        "Nothing to do for Kubernetes; after a containerd upgrade, run deploys/node.py (it edits the file at "
        "the key paths of its version).",
    ),
    Check(
        "13",
        "target kubelet",
        "No kubelet flag that the target kubelet refuses",
        "Remove --pod-infra-container-image from the kubelet flags (deploys/node.py at the target version does it "
        "in kubeadm's flags file; KUBELET_EXTRA_ARGS, /etc/default/kubelet and kubeletExtraArgs by hand).",
    ),
    Check(
        "14",
        "old pause",
        "What becomes of the pause the node runs now, after the upgrade (INFO)",
        "Nothing to do: running sandboxes keep their pause until their pods are recreated; the node deploy "
        "releases the old pause per old_pause once no sandbox runs it.",
    ),
)
_BY_ID = {check.id: check for check in (*CHECKS, *UPGRADE_CHECKS)}


def catalogue(check_id: str) -> Check:
    """The check with this id: ``catalogue("2").name == "config"``."""
    return _BY_ID[check_id]


def checks_for(expect: Expectations | None) -> tuple[Check, ...]:
    """The checks a node's run reports: the nine, and the upgrade checks when it is asked about an upgrade."""
    return (*CHECKS, *UPGRADE_CHECKS) if expect is not None and expect.upgrade is not None else CHECKS


@dataclass(frozen=True)
class Upgrade:
    """What a node would need to move to Kubernetes `version`: the pause tag, and its digest in the local
    registry asked from the control host (None with `digest_source` saying why)."""

    version: str
    tag: str
    digest: str | None
    digest_source: str


@dataclass(frozen=True)
class Expectations:
    """What a node must show: its inventory data and, from the local registry, the pause digest.

    ``sandbox_image``: what the runtime config names; ``store_name``: the name its image store files it
    under (a digest drops the tag); ``digest``: the pause index digest, from host data ``pause_digest``
    or, when unset, asked of the local registry from the control host.
    """

    settings: NodeData
    sandbox_image: str
    store_name: str
    mirror_for: str
    digest: str | None
    digest_source: str
    upgrade: Upgrade | None = None


def upgrade(settings: NodeData, version: str) -> Upgrade:
    """What moving this node to Kubernetes `version` needs, with the target tag asked of the local registry."""
    from podinfra.images.registry import tag_digest

    tag = versions.pause_tag(version, "--upgrade-to takes a minor of podinfra's catalogue")
    user, password = settings.pull_credentials or (None, None)
    try:
        digest = tag_digest(
            f"https://{settings.local_registry}", settings.pause_repository, tag,
            str(settings.ca) if settings.ca else None, user, password,
        )  # fmt: skip
    except RegistryError as e:
        return Upgrade(version, tag, None, str(e))
    return Upgrade(version, tag, digest, f"local registry {settings.local_registry}")


def expectations(settings: NodeData, ask_registry: bool = True, upgrade_to: str | None = None) -> Expectations:
    """What a node with these (checked) `settings` must show (and, with `upgrade_to`, would need)."""
    digest, source = settings.pause_digest, "host data pause_digest"
    if digest is None and ask_registry:
        try:
            digest, source = settings.pause_digest_in_registry(), f"local registry {settings.local_registry}"
        except RegistryError as e:
            source = f"unknown: {e}"
    elif digest is None:
        source = "not asked"
    sandbox = settings.sandbox_image(digest)
    mirror_for = versions.UPSTREAM if settings.sandbox_image_mode == "canonical" else settings.local_registry
    target = upgrade(settings, upgrade_to) if upgrade_to else None
    return Expectations(settings, sandbox, cri_name(sandbox), mirror_for, digest, source, target)


@dataclass
class CheckResult:
    """One check on one node, as the suite records it."""

    id: str
    name: str
    description: str
    status: str  # one of STATUSES
    expected: str = ""
    actual: str = ""
    remediation: str = ""
    duration: float = 0.0

    def warn(self, actual: str) -> None:
        """Not proved, and why: the check could not run, or passed only by a stated exception."""
        self.status, self.actual = "warn", actual

    def info(self, actual: str) -> None:
        """Nothing to prove on this node, or facts worth knowing."""
        self.status, self.actual = "info", actual
