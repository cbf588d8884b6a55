"""Which container runtime a node runs: the one its CRI socket answers for, not the one whose binary is there.

A node may carry containerd's binary stopped, or running for Docker beside CRI-O. What decides, in order:
the ``cri_socket`` data key; a node where both runtimes run is refused by name unless it says which (the
kubelet's endpoint, when it has one, is named as the value to give); else the kubelet's container runtime
endpoint, where a kubelet is configured; else the runtime that runs (its service active, or a socket of
its own listening); else the one installed, when only one is.

``probe(...)`` is one shell script (for a pyinfra fact and the node suite alike); ``parse`` reads its
output; ``choose`` decides.

>>> seen = parse(["version crio crio version 1.36.3", "active crio active", "active containerd inactive",
...               "version containerd containerd github.com/containerd/containerd 1.6.20~ds1 x"])
>>> choose(seen).runtime
'cri-o'
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from podinfra.errors import ConfigError
from podinfra.node import crio
from podinfra.node.containerd.shape import version_from_output
from podinfra.node.runtime_files import KUBELET_CONFIG_FILES, KUBELET_EXTRA_ARGS_FILES, kubelet_runtime_endpoint

CONTAINERD, CRIO = "containerd", "cri-o"
NAMES = {CONTAINERD: "containerd", CRIO: "CRI-O"}
SOCKETS = {CONTAINERD: "/run/containerd/containerd.sock", CRIO: crio.SOCKET}
_PROCESSES = {"containerd": CONTAINERD, "crio": CRIO}


class NoRuntime(ConfigError):
    """The node's runtime cannot be told, or is not one podinfra handles: one line naming the fix."""


def probe(kubelet_flags_file: str) -> str:
    """The shell script whose output :func:`parse` reads (read-only; each line says one thing)."""
    flags = " ".join(shlex.quote(f) for f in (kubelet_flags_file, *KUBELET_EXTRA_ARGS_FILES, *KUBELET_CONFIG_FILES))
    return rf"""
echo "version containerd $(containerd --version 2>/dev/null | head -n1)"
echo "version crio $(crio --version 2>/dev/null | head -n1)"
echo "active containerd $(systemctl is-active containerd 2>/dev/null | head -n1)"
echo "active crio $(systemctl is-active crio 2>/dev/null | head -n1)"
for pid in $(pidof containerd crio 2>/dev/null); do
  comm=$(cat /proc/$pid/comm 2>/dev/null)
  inodes=$(ls -l /proc/$pid/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
  # listening (flag __SO_ACCEPTCON) sockets with a path, held by this process
  awk -v c="$comm" -v i=" $inodes " '$4 == "00010000" && $8 ~ /^\// && index(i, " " $7 " ") {{print "listen", c, $8}}' \
    /proc/net/unix
done
for f in {flags}; do
  [ -f "$f" ] && grep -E '^\s*(export\s+)?KUBELET_[A-Z_]*ARGS=|^containerRuntimeEndpoint:' "$f" 2>/dev/null |
    while IFS= read -r line; do printf 'kubelet %s\t%s\n' "$f" "$line"; done
done
true
"""


def _path(endpoint: str) -> str:
    """A CRI endpoint as a socket path: ``unix://`` dropped, /var/run read as /run (its usual symlink)."""
    path = endpoint.removeprefix("unix://")
    return "/run/" + path.removeprefix("/var/run/") if path.startswith("/var/run/") else path


@dataclass(frozen=True)
class Seen:
    """What the probe saw on a node."""

    versions: dict[str, str] = field(default_factory=dict)  # runtime -> its release, where installed
    active: dict[str, str] = field(default_factory=dict)  # runtime -> `systemctl is-active` answer
    listening: dict[str, str] = field(default_factory=dict)  # socket path (normalised) -> runtime listening there
    kubelet: list[tuple[str, str]] = field(default_factory=list)  # (file, line) setting the kubelet's endpoint

    @property
    def running(self) -> list[str]:
        return [r for r in NAMES if self.active.get(r) == "active" or r in self.listening.values()]

    def runtime_at(self, endpoint: str) -> str | None:
        """The runtime listening at `endpoint`, else the one it is the usual socket of (None: neither)."""
        path = _path(endpoint)
        return self.listening.get(path) or next((r for r, s in SOCKETS.items() if _path(s) == path), None)

    def socket_of(self, runtime: str) -> str:
        """Where `runtime` listens (its usual socket first), or its usual socket."""
        own = [path for path, r in self.listening.items() if r == runtime]
        return SOCKETS[runtime] if _path(SOCKETS[runtime]) in own or not own else own[0]

    def kubelet_endpoint(self) -> tuple[str, str] | None:
        files: dict[str, list[str]] = {}
        for path, line in self.kubelet:
            files.setdefault(path, []).append(line)
        return kubelet_runtime_endpoint([(path, "\n".join(lines)) for path, lines in files.items()])


def parse(lines: list[str]) -> Seen:
    """The probe's output, as lines."""
    seen = Seen()
    for line in lines:
        kind, _, rest = line.partition(" ")
        name, _, value = rest.partition(" ")
        if kind == "version" and value.strip():
            found = _version(name, value)
            if found:
                seen.versions[_PROCESSES.get(name, name)] = found
        elif kind == "active":
            seen.active[_PROCESSES.get(name, name)] = value.strip()
        elif kind == "listen" and name in _PROCESSES and value.startswith("/"):
            seen.listening[_path(value)] = _PROCESSES[name]
        elif kind == "kubelet":
            path, _, text = rest.partition("\t")
            seen.kubelet.append((path, text))
    return seen


def _version(name: str, output: str) -> str | None:
    if name == "crio":
        return crio.version_from_output(output)
    try:
        return version_from_output(output)
    except ConfigError:
        return None


@dataclass(frozen=True)
class Choice:
    """The node's runtime, its release, the socket its CRI answers on, and what decided it."""

    runtime: str  # CONTAINERD or CRIO
    version: str
    socket: str
    reason: str


def choose(seen: Seen, cri_socket: str | None = None) -> Choice:
    """The runtime the node runs (NoRuntime naming the fix where that cannot be told)."""
    running, installed = seen.running, [r for r in NAMES if r in seen.versions]
    kubelet = seen.kubelet_endpoint()
    hint = "unix:///run/containerd/containerd.sock or unix:///var/run/crio/crio.sock"
    if cri_socket:
        runtime = seen.runtime_at(cri_socket)
        if runtime is None:
            listening = ", ".join(f"{NAMES[r]} on {p}" for p, r in seen.listening.items()) or "none"
            raise NoRuntime(
                f"cri_socket {cri_socket}: neither containerd nor CRI-O listens there (listening: {listening})"
            )
        socket, reason = cri_socket.removeprefix("unix://"), f"cri_socket {cri_socket}"
    elif len(running) == 2:
        said = f"the kubelet's endpoint is {kubelet[0]} ({kubelet[1]}); " if kubelet else ""
        raise NoRuntime(
            f"both containerd and CRI-O run on this node: {said}set host data cri_socket to the socket of the one "
            f"the kubelet uses ({hint})"
        )
    elif kubelet:
        found = seen.runtime_at(kubelet[0])
        if found is None:
            raise NoRuntime(
                f"the kubelet's container runtime endpoint {kubelet[0]} ({kubelet[1]}) is neither containerd's nor "
                f"CRI-O's socket, and neither listens there: set host data cri_socket ({hint})"
            )
        runtime, socket = found, kubelet[0].removeprefix("unix://")
        reason = f"the kubelet's container runtime endpoint is {kubelet[0]} ({kubelet[1]})"
    elif running:
        runtime = running[0]
        socket, reason = seen.socket_of(runtime), f"{NAMES[runtime]} runs and {NAMES[_other(runtime)]} does not"
    elif len(installed) == 1:
        runtime = installed[0]
        socket, reason = (
            SOCKETS[runtime],
            f"{NAMES[runtime]} is installed (not running) and {NAMES[_other(runtime)]} is not",
        )
    elif installed:
        raise NoRuntime(f"containerd and CRI-O are both installed and neither runs: set host data cri_socket ({hint})")
    else:
        raise NoRuntime("neither containerd nor CRI-O is installed (containerd --version, crio --version failed)")
    if runtime not in seen.versions:
        raise NoRuntime(f"{reason}: {NAMES[runtime]} is not installed on this node ({NAMES[runtime]} --version failed)")
    return Choice(runtime, seen.versions[runtime], socket, reason)


def _other(runtime: str) -> str:
    return CRIO if runtime == CONTAINERD else CONTAINERD
