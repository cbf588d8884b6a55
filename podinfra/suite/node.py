"""The node under check: its testinfra host, what it must show, its runtime, and its CRI.

node = connect(host, "node1", expect, workdir)    # testinfra host -> Node
node.once("containerd config dump")               # asked of the node once per run
"""

from __future__ import annotations

import shlex
import subprocess
import tomllib
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from podinfra.check import catalogue
from podinfra.check.cri import CRIError, Runtime, forwarded_socket
from podinfra.data import sshconfig
from podinfra.data.models import NODE_CA
from podinfra.images.oci import ALL_MANIFEST_TYPES
from podinfra.node import crio, runtime
from podinfra.node import registries as registries_conf
from podinfra.node.containerd import ctr, daemon, hazards
from podinfra.suite import internals, probes, readers, waits

RESULTS = pytest.StashKey[dict[str, dict[str, catalogue.CheckResult]]]()
NOTES = pytest.StashKey[dict[str, list[str]]]()


@dataclass(eq=False)  # pluggy keeps plugins in sets: hashed by identity
class Expected:
    """What each node must show, handed to a run of the suite in memory by ``podinfra check``:
    ``pytest.main(args, plugins=[Expected(by_node)])``."""

    by_node: dict[str, catalogue.Expectations]

    def for_node(self, name: str) -> catalogue.Expectations:
        if name not in self.by_node:
            raise RuntimeError(f"{name} is not among the nodes podinfra check was given")
        return self.by_node[name]


def done(config: pytest.Config, node: str) -> dict[str, catalogue.CheckResult]:
    """The results recorded so far for `node` in this run."""
    return config.stash[RESULTS].get(node, {})


MARK = "=== "


def snapshot_script(expect: catalogue.Expectations) -> str:
    """One shell script for everything the read-only checks need of a node: a node is asked once, over one
    SSH session, rather than a command at a time (each an ssh client, most of a check's CPU here)."""
    settings = expect.settings
    files = [*settings.hosts_toml.values(), settings.kubelet_flags_file]
    socket = shlex.quote(settings.cri_socket or crio.SOCKET)
    parts = [
        f'echo "{MARK}runtime"; {runtime.probe(settings.kubelet_flags_file)}',
        f'echo "{MARK}daemon"; if command -v containerd >/dev/null; then {daemon.PROBE}',
        f'echo "{MARK}config"; cat -- "$config" 2>/dev/null; fi',
        f'echo "{MARK}crio status config"; crio status --socket {socket} config 2>/dev/null',
        f"if command -v crio >/dev/null; then {crio.FILES_PROBE}; {crio.REGISTRIES_PROBE}; fi",
        *(f"echo {shlex.quote(MARK + 'file ' + path)}; cat -- {shlex.quote(path)} 2>/dev/null" for path in files),
        f'echo "{MARK}sha256"; sha256sum -- {shlex.quote(NODE_CA)} 2>/dev/null',
        f'echo "{MARK}kubelet"; command -v kubelet',
        f'echo "{MARK}images"; ctr -n k8s.io images ls 2>/dev/null',
    ]
    if settings.airgap_probe:
        url = shlex.quote(f"http://{settings.airgap_probe}/")
        parts.append(f'echo "{MARK}airgap"; curl -sS -m 3 -o /dev/null {url} 2>&1; echo "rc=$?"')
    return "\n".join(parts) + "\ntrue\n"


def sections(output: str) -> dict[str, str]:
    """The snapshot's output by section (a file that does not exist has an empty section)."""
    return crio.marked(output, MARK)


@dataclass
class Node:
    """The node under check: its testinfra host, what it must show, what it showed (one snapshot), and
    how to reach it beyond host.run."""

    name: str
    host: Any  # testinfra.host.Host
    expect: catalogue.Expectations
    runtime: str  # "containerd" or "cri-o"
    version: str
    socket: str  # where its CRI answers
    chosen_by: str  # what said which runtime the node runs
    ssh_config: Path | None  # None: the local machine
    alias: str
    shown: dict[str, str] = field(default_factory=dict, repr=False)  # the snapshot, by section
    answers: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def once(self, command: str, *args: str) -> Any:
        """`run` for what does not change during a check run: asked of the node once."""
        key = (command, *args)
        if key in self.answers:
            return self.answers[key]
        result = self.host.run(command, *args)
        if result.rc != 255:  # 255: ssh itself failed; ask again next time rather than repeat that
            self.answers[key] = result
        return result

    def read(self, path: str) -> str | None:
        """A file's text, or None where it does not exist (from the snapshot when it holds the file)."""
        if f"file {path}" in self.shown:
            return self.shown[f"file {path}"] or None
        result = self.once("cat -- %s", path)
        return result.stdout if result.rc == 0 else None

    @cached_property
    def daemon(self) -> daemon.Daemon:
        """What the running containerd reads, and its effective config (see podinfra.node.containerd.daemon)."""
        return daemon.parse(self.shown.get("daemon", "").splitlines())

    def config_text(self) -> str:
        """The config file the running containerd was started with."""
        return self.shown.get("config", "")

    def docker_package_config(self) -> str | None:
        """The line naming Docker's CRI-disabled containerd.io file when the daemon's file is one."""
        try:
            return hazards.docker_package_config(tomllib.loads(self.config_text()))
        except tomllib.TOMLDecodeError:
            return None

    def config_path_problems(self, config_path: Any) -> tuple[list[str], list[str]]:
        """(the directories containerd searches for hosts.toml, in order (an empty config_path: 2.2+'s default
        list), why containerd does not take the mirrored registries' hosts.toml from containerd_certs_dir)."""
        certs = self.expect.settings.containerd_certs_dir
        dirs = hazards.config_path_dirs(config_path, self.version)
        several = hazards.several_dirs(dirs, self.version)
        if certs not in dirs or several:
            return dirs, [several or f"config_path = {config_path!r}: containerd does not read {certs}"]
        # 1.x and 2.0 search the list: the first directory holding the registry's (or _default) wins
        registries = list(self.expect.settings.hosts_toml)
        candidates = [c for root in dirs for r in registries for c in hazards.host_dir_candidates(root, r)]
        loop = 'for p in %s; do [ -d "$p" ] && echo "$p"; done; true'
        listed = self.once(loop % " ".join(["%s"] * len(candidates)), *candidates)
        exists = dict.fromkeys(listed.stdout.splitlines(), True)
        used = {r: hazards.hosts_dir_used(dirs, r, exists) for r in registries}
        return dirs, [
            f"containerd takes {r}'s hosts.toml from {where}, not {certs} (config_path {':'.join(dirs)!r} is "
            "searched in order)"
            for r, where in used.items()
            if where not in (None, f"{certs}/{r}")
        ]

    def sha256(self, path: str) -> str | None:
        """The sha256 of a file on the node, or None where it does not exist."""
        for line in self.shown.get("sha256", "").splitlines():
            digest, _, name = line.partition("  ")
            if name == path:
                return digest
        held = self.once("sha256sum -- %s", path)
        return held.stdout.split()[0] if held.rc == 0 else None

    def images(self) -> dict[str, ctr.StoredImage]:
        """containerd's ``k8s.io`` images when the snapshot was taken."""
        return ctr.images(self.shown.get("images", ""))

    def crio_files(self) -> list[tuple[str, str]]:
        """(path, text) of crio.conf and every file under crio.conf.d, in the order CRI-O reads them."""
        prefix = "crio file "
        return crio.in_read_order(
            {key[len(prefix) :]: text for key, text in self.shown.items() if key.startswith(prefix)}
        )

    def crio_config(self) -> dict[str, Any] | None:
        """``[crio.image]`` of the running CRI-O's config (``crio status config``), None where it does not answer."""
        text = self.shown.get("crio status config", "")
        if self.socket != crio.SOCKET and not text:
            text = self.once("crio status --socket %s config", self.socket).stdout
        return crio.running_config(text)

    def registries(self) -> registries_conf.RegistriesConf:
        """registries.conf and its drop-ins as containers/image merges them."""
        prefix = "registries file "
        return registries_conf.merge([(k[len(prefix) :], v) for k, v in self.shown.items() if k.startswith(prefix)])

    @property
    def has_kubelet(self) -> bool:
        return bool(self.shown.get("kubelet", "").strip())

    def airgap(self) -> tuple[int, str]:
        """(curl's exit code, its message) for the airgap probe, as the snapshot saw it."""
        lines = self.shown.get("airgap", "").splitlines()
        rc = int(lines[-1].removeprefix("rc=")) if lines and lines[-1].startswith("rc=") else -1
        return rc, " ".join(lines[:-1])

    def run_input(self, command: str, data: bytes, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
        """`command` on the node with `data` on its stdin, which testinfra cannot give (secrets go this way)."""
        argv = ["sh", "-c", command] if self.ssh_config is None else ["ssh", "-F", str(self.ssh_config), self.alias]
        if self.ssh_config is not None:
            argv.append(command)
        return subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)

    def get_manifest(self, url: str, ca: str, left: float) -> tuple[int, int, dict[str, str], str]:
        """One GET of a manifest with curl on the node, as its runtime would ask (its CA, its pull credentials),
        given at most 10 s and no more than `left`: (curl's rc, HTTP status, headers, curl's error)."""
        settings = self.expect.settings
        seconds = max(2, min(10, round(left)))
        command = f"curl -sS -m {seconds} -o /dev/null -D - -H 'Accept: {', '.join(ALL_MANIFEST_TYPES)}'"
        if settings.ca:
            command += f" --cacert '{ca}'"
        stdin = b""
        if settings.pull_credentials:  # on stdin: no command line on either side ever shows it
            command += " -K -"
            stdin = readers.curl_config(*settings.pull_credentials)
        try:
            reply = self.run_input(f"{command} '{url}'", stdin, timeout=seconds + 20)
        except subprocess.TimeoutExpired:
            return 255, 0, {}, f"ssh to the node did not return within {seconds + 20}s"
        status, headers = readers.http_reply(reply.stdout.decode(errors="replace"))
        return reply.returncode, status, headers, reply.stderr.decode(errors="replace").strip()[:300]


def connect(host: Any, name: str, expect: catalogue.Expectations, workdir: Path) -> Node:
    """The node, asked for its snapshot: which runtime it runs, and everything the checks read."""
    ssh_config, alias = ssh_config_for(host.backend, workdir)
    try:
        result = host.run(snapshot_script(expect))
    except RuntimeError as e:  # testinfra's ssh backend raises with the CommandResult when ssh itself fails
        found = e.args[0] if e.args else None
        detail = getattr(found, "stderr", "") or str(e)
        raise RuntimeError(f"cannot run commands on {name} over SSH: {detail.strip()[:300]}") from None
    if result.rc == 255:
        raise RuntimeError(f"cannot run commands on {name} over SSH: {result.stderr.strip()[:300]}")
    shown = sections(result.stdout)
    try:
        chosen = runtime.choose(runtime.parse(shown.get("runtime", "").splitlines()), expect.settings.cri_socket)
    except runtime.NoRuntime as e:
        raise RuntimeError(str(e)) from None
    return Node(
        name, host, expect, chosen.runtime, chosen.version, chosen.socket, chosen.reason, ssh_config, alias, shown
    )


def ssh_config_for(backend: Any, workdir: Path) -> tuple[Path | None, str]:
    """An ssh_config (and host alias) reaching the testinfra host; None for the local backend."""
    target = internals.ssh_target(backend)
    if target.kind == "local":
        return None, "localhost"
    if target.kind not in internals.SSH_BACKENDS:
        raise RuntimeError(f"the {target.kind} connection is not supported: use ssh:// (or local://)")
    if target.ssh_config:
        return target.ssh_config, target.name
    path = workdir / "ssh_config"
    path.write_text(
        sshconfig.block(target.name, user=target.user, port=target.port, identity=target.identity, batch=True)
    )
    return path, target.name


@dataclass
class CRI:
    """The node's CRI endpoint, or why it cannot be reached."""

    runtime: Runtime | None
    socket: str
    answer: tuple[str, str] = ("", "")
    error: str = ""
    removed_leftovers: int = 0
    kept_leftovers: dict[str, str] = field(default_factory=dict)  # {sandbox id: why the runtime would not remove it}
    slow: bool = False  # the error is a deadline passed, not an answer
    limit: float = 0.0

    @property
    def leftovers_note(self) -> str:
        """What connecting removed, said in check 1 and in the terminal ('' when nothing)."""
        said = []
        if self.removed_leftovers:
            said.append(f"removed {self.removed_leftovers} probe sandbox(es) left by an interrupted run")
        if self.kept_leftovers:
            first_id, why = next(iter(self.kept_leftovers.items()))
            said.append(
                f"could not remove {len(self.kept_leftovers)} probe sandbox(es) left by an interrupted run "
                f"({first_id[:13]}: {why}); the next run tries again"
            )
        return "; ".join(said)

    def get(self) -> Runtime:
        if self.runtime is None:
            if self.slow:  # slow is WARN, not a missing CRI
                raise waits.Slow(f"the CRI on {self.socket}", self.limit, self.limit, self.error)
            pytest.fail(f"no CRI: {self.error}")
        return self.runtime


def open_cri(node: Node, stack: ExitStack) -> CRI:
    """The CRI over an SSH-forwarded socket (closed with `stack`); leftovers of interrupted probes removed."""
    socket = node.socket
    limit = node.expect.settings.check_probe_timeout
    try:
        target = (
            f"unix://{socket}"
            if node.ssh_config is None
            else stack.enter_context(forwarded_socket(node.ssh_config, node.alias, socket, limit))
        )
        runtime = Runtime(target, timeout=limit)
        stack.callback(runtime.close)
        answer = runtime.version()
        with probes.held_interrupts() as checkpoint:
            removed, kept = probes.remove_leftovers(runtime, checkpoint)
    except CRIError as e:
        return CRI(None, socket, error=f"{socket}: {e}", slow=waits.is_slow(e), limit=limit)
    return CRI(runtime, socket, answer, removed_leftovers=len(removed), kept_leftovers=kept)


def require(done: dict[str, catalogue.CheckResult], record: catalogue.CheckResult, ids: tuple[str, ...]) -> None:
    """Do not run a probe when a check it depends on failed (WARN, not run): a probe on a drifted node
    could pull from elsewhere or re-pull the pause image and hide the drift."""
    failed = [i for i in ids if i in done and done[i].status == "fail"]
    if failed:
        record.warn(f"not run: check {', '.join(failed)} failed")
        pytest.skip(record.actual)


def stored(node: Node, cri: CRI, name: str) -> tuple[str | None, dict[str, str]]:
    """(digest, labels) of `name` in the runtime's image store; (None, {}) when absent."""
    name = readers.store_key(name)
    if node.runtime == "containerd":
        image = node.images().get(name)
        return (image.digest, image.labels) if image else (None, {})
    info = cri.get().image_status(name)
    if info is None:
        return None, {}
    digests = [d.split("@", 1)[1] for d in info.repo_digests if d.split("@", 1)[0] == ctr.repository(name)]
    # CRI-O may list the index's digest beside the platform manifest's: the expected one, where it is there
    found = node.expect.digest if node.expect.digest in digests else (digests[0] if digests else None)
    return found, {}


def mirror_route(node: Node) -> tuple[str, str, str]:
    """(URL of the pause manifest as the runtime would ask for it, CA file on the node, where the route came from)."""
    expect, settings = node.expect, node.expect.settings
    canonical = settings.sandbox_image_mode == "canonical"
    repo = "pause" if canonical else settings.pause_repository
    prefix = f"/{settings.registry_prefix}" if settings.registry_prefix and canonical else ""
    route, ca, source = f"https://{settings.local_registry}/v2{prefix}", NODE_CA, "inventory (no hosts.toml)"
    if node.runtime == "containerd":
        path = f"{settings.containerd_certs_dir}/{expect.mirror_for}/hosts.toml"
        text = node.read(path)
        try:
            endpoints = [e for e in readers.hosts_endpoints(text) if "resolve" in e.capabilities] if text else []
        except tomllib.TOMLDecodeError:
            endpoints = []
        if endpoints:
            route, source = endpoints[0].api_root, path
            ca = endpoints[0].ca[0] if endpoints[0].ca else NODE_CA
    return f"{route}/{repo}/manifests/{settings.pause}", ca, source
