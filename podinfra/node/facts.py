"""pyinfra facts about a node's container runtime, kubelet and registry.

from podinfra.node.facts import ContainerdDaemon, ContainerdVersion, NodeRuntime

version = host.get_fact(ContainerdVersion)        # "2.1.9", or None without containerd
daemon = host.get_fact(ContainerdDaemon)          # what the running daemon reads
daemon.changed_since_start()                      # ["/etc/containerd/config.toml"]: a restart is pending
choose(host.get_fact(NodeRuntime))                # which runtime the node runs (podinfra.node.runtime)
"""

from __future__ import annotations

from typing import Any, TypeVar

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.facts import FactBase

from podinfra.node import cri_curl, crio, runtime
from podinfra.node.containerd import ctr, daemon
from podinfra.node.containerd.shape import version_from_output

T = TypeVar("T")


class ContainerdVersion(FactBase[str | None]):
    """containerd's release, e.g. ``"1.6.20"``, or None where containerd is not installed."""

    def requires_command(self) -> str:
        return "containerd"

    def command(self) -> str:
        return "containerd --version"

    def process(self, output: list[str]) -> str | None:
        return version_from_output("\n".join(output))


class CrioVersion(FactBase[str | None]):
    """CRI-O's release, e.g. ``"1.36.3"``, or None where CRI-O is not installed."""

    def requires_command(self) -> str:
        return "crio"

    def command(self) -> str:
        return "crio --version"

    def process(self, output: list[str]) -> str | None:
        return crio.version_from_output("\n".join(output))


class NodeRuntime(FactBase[runtime.Seen]):
    """What tells which runtime the node runs: each runtime's release, whether its service is active, the
    sockets containerd and CRI-O listen on, and the kubelet's container runtime endpoint
    (``podinfra.node.runtime.choose`` decides from it)."""

    def command(self, kubelet_flags_file: str = "/var/lib/kubelet/kubeadm-flags.env") -> str:
        return runtime.probe(kubelet_flags_file)

    def process(self, output: list[str]) -> runtime.Seen:
        return runtime.parse(output)


class CrioRunningConfig(FactBase[dict[str, Any] | None]):
    """``[crio.image]`` of the running CRI-O's config (``crio status config`` asks the daemon), or None
    where it does not answer on `socket`."""

    def requires_command(self, socket: str = crio.SOCKET) -> str:
        return "crio"

    def command(self, socket: str = crio.SOCKET) -> StringCommand:
        return StringCommand("crio", "status", "--socket", QuoteString(socket), "config", "2>/dev/null", "||", "true")

    def process(self, output: list[str]) -> dict[str, Any] | None:
        return crio.running_config("\n".join(output))


class CrioConfigFiles(FactBase[list[tuple[str, str]]]):
    """(path, text) of crio.conf and every file under crio.conf.d, in the order CRI-O reads them."""

    def command(self) -> str:
        return crio.FILES_PROBE

    def process(self, output: list[str]) -> list[tuple[str, str]]:
        return crio.files_from_output("\n".join(output))

    default = list


class CrioRegistriesFiles(FactBase[list[tuple[str, str]]]):
    """(path, text) of registries.conf and each ``registries.conf.d/*.conf``, in the order containers/image
    reads them."""

    def command(self) -> str:
        return crio.REGISTRIES_PROBE

    def process(self, output: list[str]) -> list[tuple[str, str]]:
        return crio.registries_from_output("\n".join(output))

    default = list


class CrioCall(FactBase[T | None]):
    """A CRI call on CRI-O's socket from the node's shell (`cri_curl`): the reply `read` turns into a value,
    or None where CRI-O does not answer (stopped, not started yet, or the object is gone)."""

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "curl"

    def read(self, output: list[str]) -> T:
        raise NotImplementedError

    def process(self, output: list[str]) -> T | None:
        try:
            return self.read(output)
        except cri_curl.CRICallError:
            return None


class CrioImage(CrioCall[cri_curl.ImageStatus | None]):
    """CRI-O's ImageStatus of `image`, or None where it has none (or does not answer: the pull that
    follows says why, if it still does not)."""

    def command(self, image: str, socket: str = crio.SOCKET) -> str:
        return cri_curl.image_status_command(socket, image)

    def read(self, output: list[str]) -> cri_curl.ImageStatus | None:
        return cri_curl.image_status(output)


class CrioImages(CrioCall[list[cri_curl.ImageStatus]]):
    """Every image CRI-O's image service lists."""

    def command(self, socket: str = crio.SOCKET) -> str:
        return cri_curl.list_images_command(socket)

    def read(self, output: list[str]) -> list[cri_curl.ImageStatus]:
        return cri_curl.images(output)


class CrioSandboxes(CrioCall[list[str]]):
    """The ids of CRI-O's pod sandboxes, whatever their state."""

    def command(self, socket: str = crio.SOCKET) -> str:
        return cri_curl.sandboxes_command(socket)

    def read(self, output: list[str]) -> list[str]:
        return cri_curl.sandboxes(output)


class CrioSandboxImage(CrioCall[str]):
    """The pause image a CRI-O pod sandbox was made from."""

    def command(self, sandbox_id: str, socket: str = crio.SOCKET) -> str:
        return cri_curl.sandbox_image_command(socket, sandbox_id)

    def read(self, output: list[str]) -> str:
        return cri_curl.sandbox_image(output)


class ContainerdDaemon(FactBase[daemon.Daemon | None]):
    """The running containerd: its PID and start time, the config file it was started with, the files
    merged into that config with their mtimes, and the effective config (``config dump``)."""

    def requires_command(self) -> str:
        return "containerd"

    def command(self) -> str:
        return daemon.PROBE

    def process(self, output: list[str]) -> daemon.Daemon:
        return daemon.parse(output)


class ContainerdImages(FactBase[dict[str, ctr.StoredImage]]):
    """The images in containerd's ``k8s.io`` namespace (the CRI's), by name."""

    def requires_command(self) -> str:
        return "ctr"

    def command(self) -> str:
        return "ctr -n k8s.io images ls"

    def process(self, output: list[str]) -> dict[str, ctr.StoredImage]:
        return ctr.images("\n".join(output))

    default = dict


class ContainerImages(FactBase[set[str]]):
    """The images containerd's ``k8s.io`` containers were made from (pod sandboxes: their pause)."""

    def requires_command(self) -> str:
        return "ctr"

    def command(self) -> str:
        return "ctr -n k8s.io containers ls"

    def process(self, output: list[str]) -> set[str]:
        return ctr.container_images("\n".join(output))

    default = set


class HttpStatus(FactBase[str]):
    """The HTTP status an anonymous request to `url` gets from the node ("000" when nothing answered)."""

    def requires_command(self, url: str, cacert: str = "") -> str:
        return "curl"

    def command(self, url: str, cacert: str = "") -> StringCommand:
        tls = ("--cacert", QuoteString(cacert)) if cacert else ()
        # `|| true`: curl fails when nothing answers, and "000" is then the answer
        return StringCommand(
            "curl", "-sS", "-o", "/dev/null", "-w", "'%{http_code}'", "--max-time", "5", *tls, QuoteString(url),
            "2>/dev/null", "||", "true",
        )  # fmt: skip

    def process(self, output: list[str]) -> str:
        return "".join(output).strip()
