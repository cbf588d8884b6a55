"""Where a lab lives, how its hosts are addressed, and the state file that `status` and the
inventory read."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from podinfra.errors import PodinfraError

STATE_ROOT = Path(os.environ.get("PODINFRA_STATE_ROOT", "/var/lib/podinfra"))
CACHE_DIR = Path(os.environ.get("PODINFRA_CACHE_DIR", "/var/cache/podinfra"))
DEFAULT_LAB = "lab"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_UPSTREAM_PORT = 5100
FIRST_NODE_HOST = 11  # .1 is the host's bridge, .2 the registry node
# containerd lines the lab can boot -> where each one's binaries come from: a Debian suite's package,
# None for the node image's own (bookworm's), or RELEASE for containerd's release tarball of that line
# (podinfra.lab.releases); see podinfra.lab.image.
RELEASE = "release tarball"
CONTAINERD_SUITES: dict[str, str | None] = {"1.6": None, "1.7": "trixie", "2.1": "sid", "2.2": RELEASE, "2.3": RELEASE}
CONTAINERD_LINES = tuple(CONTAINERD_SUITES)
# What `lab up` boots when no runtime is named: the lines whose binaries come from Debian.
DEFAULT_LINES = tuple(line for line, source in CONTAINERD_SUITES.items() if source != RELEASE)
CRIO = "cri-o"  # CRI-O 1.36 from its release tarball (podinfra.lab.crio)
RUNTIMES = (*CONTAINERD_LINES, CRIO)


class LabError(PodinfraError, RuntimeError):
    """The lab cannot do what was asked; the message says what to do."""


@contextmanager
def cache_lock(entry: Path) -> Iterator[None]:
    """Hold the lock of one cache entry while it is built: labs brought up at once on one machine
    build each entry once, and none reads a half-built one. One lock file per entry, so building one
    entry may build another inside it."""
    locks = CACHE_DIR / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{entry.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


@dataclass(frozen=True)
class LabConfig:
    """What a lab is: its name, network and size."""

    name: str = DEFAULT_LAB
    subnet: str = DEFAULT_SUBNET
    nodes: int = 3
    upstream_port: int = DEFAULT_UPSTREAM_PORT
    runtimes: tuple[str, ...] = DEFAULT_LINES  # containerd lines or CRIO, given to nodes in turn

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtimes", tuple(self.runtimes))  # a list when read back from JSON
        unknown = [runtime for runtime in self.runtimes if runtime not in RUNTIMES]
        if not self.runtimes or unknown:
            raise LabError(
                f"--runtimes {','.join(self.runtimes)}: the lab runs containerd {', '.join(CONTAINERD_LINES)}"
                f" and {CRIO}"
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
        """(name, group, address, runtime) for every lab host, the registry host first (on the oldest
        containerd line: its runtime is not what it is there for)."""
        nodes = [("registry", "registry", self.address(2), CONTAINERD_LINES[0])]
        for i in range(1, self.nodes + 1):
            runtime = self.runtimes[(i - 1) % len(self.runtimes)]
            nodes.append((f"node{i}", "nodes", self.address(FIRST_NODE_HOST + i - 1), runtime))
        return nodes


@dataclass
class NodeState:
    name: str
    group: str
    address: str
    pid: int | None = None
    pod_subnet: str = ""
    runtime: str = CONTAINERD_LINES[0]  # a containerd line or CRIO
    version: str = ""  # the runtime's own version, as its `--version` prints it

    @property
    def runtime_name(self) -> str:
        return CRIO if self.runtime == CRIO else "containerd"

    @property
    def service(self) -> str:
        """The runtime's systemd unit on the node."""
        return "crio" if self.runtime == CRIO else "containerd"

    @property
    def containerd(self) -> str | None:
        """The node's containerd line (None on a CRI-O node)."""
        return None if self.runtime == CRIO else self.runtime

    @property
    def containerd_version(self) -> str | None:
        return None if self.runtime == CRIO else self.version


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
        try:
            return cls(
                config=LabConfig(**raw["config"]),
                nodes=[NodeState(**node) for node in raw["nodes"]],
                upstream_pid=raw["upstream_pid"],
            )
        except (TypeError, KeyError) as error:  # written by another podinfra version
            raise LabError(
                f"{path} is not a state file of this podinfra ({error}): `podinfra lab down --name {name}`"
            ) from None


def pid_alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line names `marker`, so a reused PID never counts."""
    if not pid:
        return False
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
