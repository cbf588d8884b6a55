"""The node under check: its testinfra host, what it must show, its runtime, and its CRI.

node = connect(host, "node1", expect, workdir)    # testinfra host -> Node
node.once("containerd config dump")               # asked of the node once per run
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from podinfra import checks, sshconfig
from podinfra.containerd import daemon
from podinfra.containerd.shape import ConfigError, version_from_output
from podinfra.cri import CONTAINERD_SOCKET, CRIO_SOCKET, CRIError, Runtime, forwarded_socket
from podinfra.runtime_config import crio_version_from_output
from podinfra.suite import probes

RESULTS = pytest.StashKey[dict[str, dict[str, checks.CheckResult]]]()
NOTES = pytest.StashKey[dict[str, list[str]]]()


@dataclass(eq=False)  # pluggy keeps plugins in sets: hashed by identity
class Expected:
    """What each node must show, handed to a run of the suite in memory by ``podinfra check``:
    ``pytest.main(args, plugins=[Expected(by_node)])``."""

    by_node: dict[str, checks.Expectations]

    def for_node(self, name: str) -> checks.Expectations:
        if name not in self.by_node:
            raise RuntimeError(f"{name} is not among the nodes podinfra check was given")
        return self.by_node[name]


def done(config: pytest.Config, node: str) -> dict[str, checks.CheckResult]:
    """The results recorded so far for `node` in this run."""
    return config.stash[RESULTS].get(node, {})


@dataclass
class Node:
    """The node under check: its testinfra host, what it must show, and how to reach it beyond host.run."""

    name: str
    host: Any  # testinfra.host.Host
    expect: checks.Expectations
    runtime: str  # "containerd" or "cri-o"
    version: str
    ssh_config: Path | None  # None: the local machine
    alias: str
    answers: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def once(self, command: str, *args: str) -> Any:
        """`run` for what does not change during a check run (config dump, files): asked of the node once."""
        key = (command, *args)
        if key in self.answers:
            return self.answers[key]
        result = self.host.run(command, *args)
        if result.rc != 255:  # 255: ssh itself failed; ask again next time rather than repeat that
            self.answers[key] = result
        return result

    def read(self, path: str) -> str | None:
        """A file's text, or None where it cannot be read (`cat`: testinfra's File asks the OS first)."""
        result = self.once("cat -- %s", path)
        return result.stdout if result.rc == 0 else None

    def daemon(self) -> daemon.Daemon:
        """What the running containerd reads, and its effective config (see podinfra.containerd.daemon)."""
        return daemon.parse(self.once(daemon.PROBE).stdout.splitlines())

    def run_input(self, command: str, data: bytes, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
        """`command` on the node with `data` on its stdin, which testinfra cannot give (secrets go this way)."""
        argv = ["sh", "-c", command] if self.ssh_config is None else ["ssh", "-F", str(self.ssh_config), self.alias]
        if self.ssh_config is not None:
            argv.append(command)
        return subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)


def ssh_config_for(backend: Any, workdir: Path) -> tuple[Path | None, str]:
    """An ssh_config (and host alias) reaching the testinfra host; None for the local backend."""
    if backend.NAME == "local":
        return None, "localhost"
    if backend.NAME not in ("ssh", "safe-ssh", "paramiko"):
        raise RuntimeError(f"the {backend.NAME} connection is not supported: use ssh:// (or local://)")
    if getattr(backend, "ssh_config", None):
        return Path(backend.ssh_config), backend.host.name
    path = workdir / "ssh_config"
    identity = getattr(backend, "ssh_identity_file", None)
    path.write_text(
        sshconfig.block(
            backend.host.name, user=backend.host.user, port=backend.host.port, identity=identity, batch=True
        )
    )
    return path, backend.host.name


def reachable(host: Any, name: str) -> None:
    try:
        host.run("true")
    except RuntimeError as e:  # testinfra's ssh backend raises with the CommandResult when ssh itself fails
        result = e.args[0] if e.args else None
        detail = getattr(result, "stderr", "") or str(e)
        raise RuntimeError(f"cannot run commands on {name} over SSH: {detail.strip()[:300]}") from None


def detect_runtime(host: Any) -> tuple[str, str]:
    containerd = host.run("containerd --version")
    if containerd.rc == 0:
        try:
            return "containerd", version_from_output(containerd.stdout)
        except ConfigError as e:
            raise RuntimeError(str(e)) from None
    crio = host.run("crio --version")
    version = crio_version_from_output(crio.stdout) if crio.rc == 0 else None
    if version:
        return "cri-o", version
    raise RuntimeError("neither containerd nor CRI-O is installed (containerd --version, crio --version failed)")


@dataclass
class CRI:
    """The node's CRI endpoint, or why it cannot be reached."""

    runtime: Runtime | None
    socket: str
    answer: tuple[str, str] = ("", "")
    error: str = ""
    removed_leftovers: int = 0

    def get(self) -> Runtime:
        if self.runtime is None:
            pytest.fail(f"no CRI: {self.error}")
        return self.runtime


def open_cri(node: Node, stack: ExitStack) -> CRI:
    """The CRI over an SSH-forwarded socket (closed with `stack`); leftovers of interrupted probes removed."""
    socket = node.expect.settings.cri_socket or (CONTAINERD_SOCKET if node.runtime == "containerd" else CRIO_SOCKET)
    try:
        target = (
            f"unix://{socket}"
            if node.ssh_config is None
            else stack.enter_context(forwarded_socket(node.ssh_config, node.alias, socket))
        )
        runtime = Runtime(target, timeout=node.expect.settings.check_probe_timeout)
        stack.callback(runtime.close)
        answer = runtime.version()
        with probes.held_interrupts():
            removed = probes.remove_leftovers(runtime)
    except CRIError as e:
        return CRI(None, socket, error=f"{socket}: {e}")
    return CRI(runtime, socket, answer, removed_leftovers=len(removed))


def require(done: dict[str, checks.CheckResult], record: checks.CheckResult, ids: tuple[str, ...]) -> None:
    """Do not run a probe when a check it depends on failed (WARN, not run): a probe on a drifted node
    could pull from elsewhere or re-pull the pause image and hide the drift."""
    failed = [i for i in ids if i in done and done[i].status == "fail"]
    if failed:
        record.warn(f"not run: check {', '.join(failed)} failed")
        pytest.skip(record.actual)
