"""A node's settings as plain data: what `deploys/node.py` applies and the node suite expects.

Kept apart from `podinfra.hostdata` (which reads them from pyinfra host data) so that the node
suite, which `podinfra check` starts once per node, imports neither pyinfra nor requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Where deploys/node.py puts the registry CA on every node; the checks look for it there.
NODE_CA = "/etc/podinfra/registry-ca.crt"


@dataclass(frozen=True)
class NodeSettings:
    """What `deploys/node.py` makes every node use. Passwords are kept out of repr."""

    kubernetes_version: str
    pause_tag: str
    registry: str
    prefix: str
    mode: str
    ca: Path | None
    pull_user: str | None
    pull_password: str | None = field(repr=False)
    mirrored: tuple[str, ...]
    containerd_config: str | None  # None: the file the running containerd reads
    certs_dir: str
    kubelet_flags_file: str
    restart_batch: int
    max_failed_nodes: int

    @property
    def pause_repository(self) -> str:
        """The pause repository in the local registry, e.g. "pause" or "k8s/pause"."""
        return f"{self.prefix}/pause" if self.prefix else "pause"

    def pause_digest(self) -> str:
        """The digest the local registry holds for the pause tag, asked once a run (RegistryError if not)."""
        from podinfra.registry import tag_digest  # requests: only for the callers that ask

        ca = str(self.ca) if self.ca else None
        return tag_digest(
            f"https://{self.registry}", self.pause_repository, self.pause_tag, ca, self.pull_user, self.pull_password
        )

    def sandbox_image(self, digest: str | None) -> str:
        """The reference the runtime is told: the canonical name, or ("local" mode) the local
        reference, pinned by `digest` when it is known."""
        if self.mode == "canonical":
            return f"registry.k8s.io/pause:{self.pause_tag}"
        local = f"{self.registry}/{self.pause_repository}:{self.pause_tag}"
        return f"{local}@{digest}" if digest else local
