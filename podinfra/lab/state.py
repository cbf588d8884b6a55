"""Where a lab lives, how its hosts are addressed, and the state file that `status` and the
inventory read."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from podinfra.errors import PodinfraError

STATE_ROOT = Path(os.environ.get("PODINFRA_STATE_ROOT", "/var/lib/podinfra"))
CACHE_DIR = Path(os.environ.get("PODINFRA_CACHE_DIR", "/var/cache/podinfra"))
DEFAULT_LAB = "lab"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_UPSTREAM_PORT = 5100
FIRST_NODE_HOST = 11  # .1 is the host's bridge, .2 the registry node
# containerd lines the lab can boot -> the Debian suite each one's package comes from (None: the node
# image's own, bookworm's); see podinfra.lab.image.
CONTAINERD_SUITES: dict[str, str | None] = {"1.6": None, "1.7": "trixie", "2.1": "sid"}
CONTAINERD_LINES = tuple(CONTAINERD_SUITES)


class LabError(PodinfraError, RuntimeError):
    """The lab cannot do what was asked; the message says what to do."""


@dataclass(frozen=True)
class LabConfig:
    """What a lab is: its name, network and size."""

    name: str = DEFAULT_LAB
    subnet: str = DEFAULT_SUBNET
    nodes: int = 3
    upstream_port: int = DEFAULT_UPSTREAM_PORT
    containerd: tuple[str, ...] = CONTAINERD_LINES  # given to nodes in turn

    def __post_init__(self) -> None:
        object.__setattr__(self, "containerd", tuple(self.containerd))  # a list when read back from JSON
        unknown = [line for line in self.containerd if line not in CONTAINERD_LINES]
        if not self.containerd or unknown:
            raise LabError(
                f"--containerd {','.join(self.containerd)}: the lab runs containerd {', '.join(CONTAINERD_LINES)}"
            )
        if not self.name.isalnum() or len(self.name) > 10:
            raise LabError(f"lab name {self.name!r}: use 1-10 letters or digits")
        network = ipaddress.ip_network(self.subnet)
        if network.version != 4 or network.prefixlen > 24:
            raise LabError(f"subnet {self.subnet}: use an IPv4 network of /24 or larger")
        if not 1 <= self.nodes <= network.num_addresses - FIRST_NODE_HOST - 1:
            raise LabError(
                f"--nodes {self.nodes}: a {self.subnet} lab holds 1 to {network.num_addresses - FIRST_NODE_HOST - 1}"
            )

    @property
    def root(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def bridge(self) -> str:
        return f"pi-{self.name}"

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def address(self, host: int) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + host)

    @property
    def gateway(self) -> str:
        return self.address(1)

    def hosts(self) -> list[tuple[str, str, str, str]]:
        """(name, group, address, containerd line) for every lab host, the registry host first (on the
        oldest line: its containerd is not what it is there for)."""
        nodes = [("registry", "registry", self.address(2), CONTAINERD_LINES[0])]
        for i in range(1, self.nodes + 1):
            line = self.containerd[(i - 1) % len(self.containerd)]
            nodes.append((f"node{i}", "nodes", self.address(FIRST_NODE_HOST + i - 1), line))
        return nodes


@dataclass
class NodeState:
    name: str
    group: str
    address: str
    pid: int | None = None
    pod_subnet: str = ""
    containerd: str = CONTAINERD_LINES[0]  # the line; its package version is in containerd_version
    containerd_version: str = ""


@dataclass
class LabState:
    config: LabConfig
    nodes: list[NodeState] = field(default_factory=list)
    upstream_pid: int | None = None

    @property
    def path(self) -> Path:
        return self.config.root / "state.json"

    @property
    def ssh_key(self) -> Path:
        return self.config.root / "ssh" / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.config.root / "ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.config.root / "ssh" / "known_hosts"

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.config.upstream_port}"

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"no node {name!r} in lab {self.config.name}")

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.rename(self.path)

    @classmethod
    def load(cls, name: str = DEFAULT_LAB) -> LabState:
        path = STATE_ROOT / name / "state.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            named = "" if name == DEFAULT_LAB else f" --name {name}"
            raise LabError(f"lab {name!r} is not up: run `podinfra lab up{named}`") from None
        return cls(
            config=LabConfig(**raw["config"]),
            nodes=[NodeState(**node) for node in raw["nodes"]],
            upstream_pid=raw["upstream_pid"],
        )


def pid_alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line names `marker`, so a reused PID never counts."""
    if not pid:
        return False
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
