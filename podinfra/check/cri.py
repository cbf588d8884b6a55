"""A CRI v1 client for a node's runtime socket, reached through an OpenSSH stream forward.

No agent runs on the node: ``ssh -L LOCAL.sock:/run/containerd/containerd.sock`` carries gRPC.

    with forwarded_socket(Path("ssh_config"), "node1") as target:
        runtime = Runtime(target)
        sandbox = runtime.run_sandbox("probe", str(uuid.uuid4()))
        app = runtime.create_container(sandbox, "app", "registry.k8s.io/podinfra/probe:1", ["sleep", "60"])
        runtime.start_container(app)
        print(runtime.exec_sync(app, ["hostname"]))
        runtime.remove_sandbox(sandbox)  # its containers go with it
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
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc as cri_grpc

from podinfra.node.crio import sandbox_pause

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CRIO_SOCKET = "/var/run/crio/crio.sock"
GONE = ("DEADLINE_EXCEEDED", "UNAVAILABLE")  # a runtime that hangs or is gone: asking again does not help


class CRIError(RuntimeError):
    """The runtime did not do what a probe asked: one line, ``RPC: CODE: the runtime's message``."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def _one_line(method: str, error: grpc.RpcError) -> CRIError:
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    details = " ".join(str(error.details() or "no details").split())
    return CRIError(f"{method}: {name}: {details}", name)


@contextmanager
def forwarded_socket(
    ssh_config: Path, host: str, remote: str = CONTAINERD_SOCKET, timeout: float = 10
) -> Iterator[str]:
    """Yield a gRPC target (``unix:///...``) that reaches `remote` on `host` over SSH.

    Through the connection's master (ControlPath) when one runs: a second SSH connection's handshake
    costs more CPU here than the rest of a node's check. Else a connection of its own."""
    with tempfile.TemporaryDirectory(prefix="podinfra-cri-") as tmp:
        local = Path(tmp) / f"{host}.sock"
        spec, ssh = f"{local}:{remote}", ["ssh", "-F", str(ssh_config)]
        muxed = subprocess.run([*ssh, "-O", "forward", "-L", spec, host], capture_output=True).returncode == 0
        # ControlPath=none: a forward of its own, gone with its process (never left in someone's master).
        forward = (
            None
            if muxed
            else subprocess.Popen(
                [*ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ControlPath=none", "-L", spec, host],
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        try:
            deadline = time.monotonic() + timeout
            while not local.exists():
                exited = forward is not None and forward.poll() is not None
                if exited or time.monotonic() > deadline:
                    err = forward.stderr.read().decode().strip() if forward and exited and forward.stderr else ""
                    if err:
                        raise CRIError(f"cannot forward {host}:{remote}: {err}")
                    raise CRIError(f"cannot forward {host}:{remote}: timed out after {timeout:g}s", "DEADLINE_EXCEEDED")
                time.sleep(0.02)
            yield f"unix://{local}"
        finally:
            if forward is None:
                subprocess.run([*ssh, "-O", "cancel", "-L", spec, host], capture_output=True)
            else:
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


@dataclass
class ImageInfo:
    """An image as the runtime's image service reports it; ``pinned`` is what the runtime says."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    pinned: bool


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


class Runtime:
    """Runtime and image services on one CRI endpoint, e.g. ``Runtime("unix:///run/containerd/containerd.sock")``."""

    def __init__(self, target: str, timeout: float = 60):
        self.channel = grpc.insecure_channel(target)
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.images = cri_grpc.ImageServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self._sandbox_configs: dict[str, cri.PodSandboxConfig] = {}

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, rpc: Any, request: Any, timeout: float) -> Any:
        try:
            return rpc(request, timeout=timeout)
        except grpc.RpcError as error:
            raise _one_line(method, error) from None

    def status_config(self) -> dict[str, Any]:
        """The runtime's own view of its CRI config (``Status(verbose)``'s ``config``): containerd 1.x
        reports ``sandboxImage`` and ``registry.configPath`` there; 2.x keeps them in its images plugin."""
        reply = self._call("Status", self.runtime.Status, cri.StatusRequest(verbose=True), self.timeout)
        try:
            found = json.loads(reply.info.get("config", "{}"))
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def version(self) -> tuple[str, str]:
        reply = self._call("Version", self.runtime.Version, cri.VersionRequest(), timeout=self.timeout)
        return reply.runtime_name, reply.runtime_version

    def pull(self, image: str) -> str:
        return str(
            self._call(
                "PullImage",
                self.images.PullImage,
                cri.PullImageRequest(image=cri.ImageSpec(image=image)),
                timeout=self.timeout,
            ).image_ref
        )

    def image_status(self, image: str) -> ImageInfo | None:
        """The image service's record of `image` (a name or an id), or None when it has none."""
        reply = self._call(
            "ImageStatus",
            self.images.ImageStatus,
            cri.ImageStatusRequest(image=cri.ImageSpec(image=image)),
            timeout=self.timeout,
        )
        if not reply.HasField("image") or not reply.image.id:
            return None
        found = reply.image
        return ImageInfo(str(found.id), list(found.repo_tags), list(found.repo_digests), bool(found.pinned))

    def run_sandbox(
        self,
        name: str,
        uid: str,
        namespace: str = "default",
        share_pid: bool = False,
        labels: dict[str, str] | None = None,
    ) -> str:
        pid_mode = cri.POD if share_pid else cri.CONTAINER
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            hostname=name,
            labels=labels or {},
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=cri.POD, pid=pid_mode, ipc=cri.POD)
                )
            ),
        )
        reply = self._call(
            "RunPodSandbox", self.runtime.RunPodSandbox, cri.RunPodSandboxRequest(config=config), timeout=self.timeout
        )
        # CreateContainer must be given the sandbox's config again.
        self._sandbox_configs[str(reply.pod_sandbox_id)] = config
        return str(reply.pod_sandbox_id)

    def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        reply = self._call(
            "PodSandboxStatus",
            self.runtime.PodSandboxStatus,
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
            timeout=self.timeout,
        )
        info = json.loads(reply.info.get("info", "{}"))
        image, pid = sandbox_pause(info)
        return SandboxStatus(
            id=sandbox_id,
            state=cri.PodSandboxState.Name(reply.status.state),
            ip=reply.status.network.ip,
            image=image,
            pid=pid,
            info=info,
        )

    def sandboxes(self, namespace: str | None = None, labels: dict[str, str] | None = None) -> list[str]:
        """Sandbox ids, Ready or not, in `namespace` (any when None) carrying all of `labels`."""
        request = cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(label_selector=labels or {}))
        reply = self._call("ListPodSandbox", self.runtime.ListPodSandbox, request, timeout=self.timeout)
        return [s.id for s in reply.items if namespace is None or s.metadata.namespace == namespace]

    def sandbox_images(self) -> list[tuple[str, str]]:
        """(NAMESPACE/NAME, pause image) of every Ready sandbox."""
        request = cri.ListPodSandboxRequest(
            filter=cri.PodSandboxFilter(state=cri.PodSandboxStateValue(state=cri.SANDBOX_READY))
        )
        reply = self._call("ListPodSandbox", self.runtime.ListPodSandbox, request, self.timeout)
        return [(f"{s.metadata.namespace}/{s.metadata.name}", self.sandbox_status(s.id).image) for s in reply.items]

    def stop_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox and, with it, every container in it."""
        self._call(
            "StopPodSandbox",
            self.runtime.StopPodSandbox,
            cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
            timeout=self.timeout,
        )

    def remove_sandbox(self, sandbox_id: str, within: float | None = None) -> None:
        """Stop and remove the sandbox with its containers, asking again (backing off) for up to `within`
        seconds (default: the runtime's timeout). Each container is stopped and removed first. A container
        still being started (by a run that was killed in its StartContainer) cannot be removed yet
        ("container is in starting state", "cannot delete running task"): that passes once the runtime
        finishes the start, which takes longer on a busy node. A runtime that hangs or is gone (`GONE`) is
        not asked again."""
        deadline = time.monotonic() + (self.timeout if within is None else within)
        pause = 0.1
        while True:
            try:
                for container in self.containers(sandbox_id):
                    self.stop_container(container)
                    self.remove_container(container)
                self.stop_sandbox(sandbox_id)
                self._call(
                    "RemovePodSandbox",
                    self.runtime.RemovePodSandbox,
                    cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                    self.timeout,
                )
                break
            except CRIError as error:
                if error.code == "NOT_FOUND" and sandbox_id not in self.sandboxes():
                    break
                if error.code in GONE or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
        self._sandbox_configs.pop(sandbox_id, None)

    def containers(self, sandbox_id: str) -> list[str]:
        """The ids of the sandbox's containers, whatever their state."""
        request = cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox_id))
        return [
            c.id for c in self._call("ListContainers", self.runtime.ListContainers, request, self.timeout).containers
        ]

    def create_container(
        self, sandbox_id: str, name: str, image: str, command: list[str], attempt: int = 0, share_pid: bool = False
    ) -> str:
        """A container in a sandbox this Runtime started; `command` replaces the image's entrypoint."""
        sandbox = self._sandbox_configs[sandbox_id]
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name, attempt=attempt),
            image=cri.ImageSpec(image=image),
            command=command,
            labels=dict(sandbox.labels),
            linux=cri.LinuxContainerConfig(
                security_context=cri.LinuxContainerSecurityContext(
                    namespace_options=cri.NamespaceOption(
                        network=cri.POD, pid=cri.POD if share_pid else cri.CONTAINER, ipc=cri.POD
                    )
                )
            ),
        )
        reply = self._call(
            "CreateContainer",
            self.runtime.CreateContainer,
            cri.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox),
            timeout=self.timeout,
        )
        return str(reply.container_id)

    def start_container(self, container_id: str) -> None:
        self._call(
            "StartContainer",
            self.runtime.StartContainer,
            cri.StartContainerRequest(container_id=container_id),
            timeout=self.timeout,
        )

    def stop_container(self, container_id: str, grace: int = 0) -> None:
        """Stop with SIGTERM, then SIGKILL after `grace` seconds (0: SIGKILL at once)."""
        self._call(
            "StopContainer",
            self.runtime.StopContainer,
            cri.StopContainerRequest(container_id=container_id, timeout=grace),
            timeout=self.timeout + grace,
        )

    def remove_container(self, container_id: str) -> None:
        self._call(
            "RemoveContainer",
            self.runtime.RemoveContainer,
            cri.RemoveContainerRequest(container_id=container_id),
            timeout=self.timeout,
        )

    def container_state(self, container_id: str) -> str:
        """``CONTAINER_CREATED``, ``CONTAINER_RUNNING``, ``CONTAINER_EXITED`` or ``CONTAINER_UNKNOWN``."""
        reply = self._call(
            "ContainerStatus",
            self.runtime.ContainerStatus,
            cri.ContainerStatusRequest(container_id=container_id),
            timeout=self.timeout,
        )
        return str(cri.ContainerState.Name(reply.status.state))

    def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 10) -> ExecResult:
        """Run `cmd` in the container and wait for it, at most `timeout` seconds."""
        reply = self._call(
            "ExecSync",
            self.runtime.ExecSync,
            cri.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
            timeout=self.timeout + timeout,
        )
        return ExecResult(
            int(reply.exit_code), reply.stdout.decode(errors="replace"), reply.stderr.decode(errors="replace")
        )
