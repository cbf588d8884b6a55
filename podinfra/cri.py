"""A CRI v1 client for a node's runtime socket, reached through an OpenSSH stream forward.

No agent runs on the node: ``ssh -L LOCAL.sock:/run/containerd/containerd.sock`` carries gRPC.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc as cri_grpc

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


class CRIError(RuntimeError):
    """The runtime did not do what a probe asked."""


@contextmanager
def forwarded_socket(
    ssh_config: Path, host: str, remote: str = CONTAINERD_SOCKET, timeout: float = 10
) -> Iterator[str]:
    """Yield a gRPC target (``unix:///...``) that reaches `remote` on `host` over SSH."""
    with tempfile.TemporaryDirectory(prefix="podinfra-cri-") as tmp:
        local = Path(tmp) / f"{host}.sock"
        forward = subprocess.Popen(
            ["ssh", "-F", str(ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"{local}:{remote}", host],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + timeout
            while not local.exists():
                if forward.poll() is not None or time.monotonic() > deadline:
                    err = forward.stderr.read().decode().strip() if forward.stderr else ""
                    raise CRIError(f"cannot forward {host}:{remote}: {err or 'timed out'}")
                time.sleep(0.05)
            yield f"unix://{local}"
        finally:
            forward.terminate()
            forward.wait()


@dataclass
class SandboxStatus:
    id: str
    state: str
    ip: str
    image: str
    pid: int
    info: dict[str, object]


class Runtime:
    """Runtime and image services on one CRI endpoint, e.g. ``Runtime("unix:///run/containerd/containerd.sock")``."""

    def __init__(self, target: str, timeout: float = 60):
        self.channel = grpc.insecure_channel(target)
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.images = cri_grpc.ImageServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def version(self) -> tuple[str, str]:
        reply = self.runtime.Version(cri.VersionRequest(), timeout=self.timeout)
        return reply.runtime_name, reply.runtime_version

    def pull(self, image: str) -> str:
        return str(
            self.images.PullImage(
                cri.PullImageRequest(image=cri.ImageSpec(image=image)), timeout=self.timeout
            ).image_ref
        )

    def run_sandbox(self, name: str, uid: str, namespace: str = "podinfra-probe", share_pid: bool = False) -> str:
        pid_mode = cri.POD if share_pid else cri.CONTAINER
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            hostname=name,
            labels={"app.kubernetes.io/managed-by": "podinfra"},
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=cri.POD, pid=pid_mode, ipc=cri.POD)
                )
            ),
        )
        reply = self.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config), timeout=self.timeout)
        return str(reply.pod_sandbox_id)

    def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        reply = self.runtime.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True), timeout=self.timeout
        )
        info = json.loads(reply.info.get("info", "{}"))
        return SandboxStatus(
            id=sandbox_id,
            state=cri.PodSandboxState.Name(reply.status.state),
            ip=reply.status.network.ip,
            image=str(info.get("image", "")),
            pid=int(info.get("pid", 0)),
            info=info,
        )

    def sandboxes(self, namespace: str | None = None) -> list[str]:
        reply = self.runtime.ListPodSandbox(cri.ListPodSandboxRequest(), timeout=self.timeout)
        return [s.id for s in reply.items if namespace is None or s.metadata.namespace == namespace]

    def remove_sandbox(self, sandbox_id: str) -> None:
        self.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)
        self.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)
