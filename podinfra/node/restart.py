"""A runtime that runs what its files say: restarted (or, for CRI-O, reloaded where that is enough) in
batches, and rolled back when it does not come back right.

The guard is the same for containerd and CRI-O: once more than ``max_failed_nodes`` nodes of earlier
batches have failed, a node keeps its previous files and is not restarted; a node whose runtime does not
come back with the wanted values gets back the files this run wrote, and its runtime restarted on them.

    written = config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    containerd_restarted(name="containerd runs it", image=image, config_path="/etc/containerd/certs.d",
                         containerd_version="2.1.9", config=path, written=written, rollout=rollout(0, 1),
                         _parallel=1)
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyinfra import logger
from pyinfra.api.command import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.api.state import State
from pyinfra.context import host, state

from podinfra.node import crio, pyinfra_internals
from podinfra.node.containerd import daemon
from podinfra.node.containerd.shape import Shape, runtime_shape
from podinfra.node.facts import ContainerdDaemon, CrioRunningConfig
from podinfra.node.operations import BACKUP, _fail
from podinfra.tomlpath import dotted

CONTAINERD_RESTART = """\
systemctl restart containerd || exit 1
for _ in $(seq 1 {wait}); do
  if ctr version >/dev/null 2>&1 && ctr plugins ls 2>/dev/null | grep -Eq '^io\\.containerd\\.grpc\\.v1 +cri +.* ok *$'
  then exit 0
  fi
  sleep 1
done
exit 1
"""
# Restart or reload (SIGHUP: pause_image, pinned_images and registries.conf are re-read, crio.conf(5)), then
# wait until the running daemon's config (`crio status config`) names the wanted pause image.
CRIO_APPLY = """\
systemctl {action} crio || exit 1
for _ in $(seq 1 {wait}); do
  crio status --socket {socket} config 2>/dev/null | grep -Fq {line} && exit 0
  sleep 1
done
exit 1
"""


@dataclass
class Rollout:
    """Failed restarts counted across one pyinfra run, so that later batches stop once more than
    `allowed` nodes have failed. One per run: :func:`rollout` keeps it on pyinfra's State.

    Batches are pyinfra's own (``_parallel=N``; how pyinfra cuts them is in
    :mod:`podinfra.node.pyinfra_internals`). A host is stopped by failures in earlier batches only, never
    by a peer of its own batch.
    """

    allowed: int
    batch: int
    failed: dict[str, int] = field(default_factory=dict)  # host name -> its batch

    def batch_of(self, state: State, host: Host) -> int:
        return pyinfra_internals.batch_of(state, host, self.batch)

    def stopped(self, state: State, host: Host) -> int:
        """How many nodes of earlier batches failed, when that is more than allowed (else 0)."""
        mine = self.batch_of(state, host)
        earlier = sum(1 for batch in self.failed.values() if batch < mine)
        return earlier if earlier > self.allowed else 0


def rollout(allowed: int, batch: int) -> Rollout:
    """This run's Rollout (the deploy file runs once per host, and every host must count in the same)."""
    runs: dict[tuple[int, int], Rollout] = pyinfra_internals.run_data(state, "rollouts", dict)
    return runs.setdefault((allowed, batch), Rollout(allowed, batch))


@dataclass(frozen=True)
class Written:
    """A file this run may write (its config_file operation), and where its previous text is kept."""

    meta: OperationMeta
    path: str
    backup: str

    def restore(self) -> StringCommand:
        """Put the previous text back; a file that did not exist before goes again."""
        path, backup = QuoteString(self.path), QuoteString(self.backup)
        return StringCommand(
            *("if", "[", "-f", backup, "];", "then", "cp", "-p", backup, path, ";"),
            *("else", "rm", "-f", path, ";", "fi"),
        )


@dataclass(frozen=True)
class Service:
    """How to bring one runtime back on its files, and what must hold once it is back."""

    name: str
    unit: str
    # action -> a script that exits 0 once the runtime is back: "restart", "reload" (where the runtime has it),
    # and "back" (restart, and wait only for it to answer: after a rollback the wanted values are gone)
    scripts: dict[str, str]
    wait: int
    verify: Callable[[Host], str]  # what is wrong once it is back ('' when nothing)
    back_means: str  # what its scripts wait for, as a failure says it

    def bounce(self, host: Host, action: str) -> str:
        """`action` the runtime; what is wrong once it is back ('' when nothing)."""
        ok, _ = host.run_shell_command(StringCommand(self.scripts[action]), print_output=False)
        if not ok:
            after = "" if action == "restart" else f" after a {action}"
            return (
                f"{self.name} did not come back {self.back_means} within {self.wait}s{after} "
                f"(journalctl -u {self.unit})"
            )
        return self.verify(host)


def _apply(
    state: State, host: Host, rollout: Rollout, runtime: Service, action: str, written: Sequence[Written], why: str
) -> bool:
    wrote = [w for w in written if w.meta.did_change()]
    earlier = rollout.stopped(state, host)
    if earlier:
        for w in wrote:
            host.run_shell_command(w.restore(), print_output=False)
        logger.error(
            f"{host.print_prefix}rollout stopped after {earlier} failed node(s) in earlier batches "
            f"(max_failed_nodes={rollout.allowed}): previous config kept, {runtime.name} not restarted"
        )
        return False
    problem = runtime.bounce(host, action)
    if not problem:
        return True
    rollout.failed[host.name] = rollout.batch_of(state, host)
    if not wrote:
        logger.error(f"{host.print_prefix}{problem}; {why}, not by podinfra in this run: fix it by hand")
        return False
    for w in wrote:
        host.run_shell_command(w.restore(), print_output=False)
    back, _ = host.run_shell_command(StringCommand(runtime.scripts["back"]), print_output=False)
    logger.error(
        f"{host.print_prefix}{problem}: previous config restored, {runtime.name} restarted"
        + ("" if back else f", and it did not come back either (journalctl -u {runtime.unit})")
    )
    return False


# --- containerd ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """What containerd's effective config must hold after a restart, and how long it may take."""

    image: str
    config_path: str
    shape: Shape
    wait: int

    def differences(self, found: daemon.Daemon) -> str:
        """What of the effective config differs from the wanted values, as one phrase ('' when nothing)."""
        paths = (self.shape.sandbox_path, self.shape.config_path_path)
        problems = [
            f"{dotted(path)} = {value!r}, not {want!r}"
            for path, value, want in zip(
                paths, found.effective(self.shape), (self.image, self.config_path), strict=True
            )
            if value != want
        ]
        return f"containerd's effective config (config dump) has {'; '.join(problems)}" if problems else ""

    def verify(self, host: Host) -> str:
        ok, output = host.run_shell_command(StringCommand(daemon.PROBE), print_output=False)
        return (
            self.differences(daemon.parse(output.stdout_lines))
            if ok
            else "the containerd probe failed after the restart"
        )


@operation()
def containerd_restarted(
    image: str,
    config_path: str,
    containerd_version: str,
    config: str,
    written: OperationMeta,
    rollout: Rollout,
    wait: int = 30,
) -> Generator[Any]:
    """containerd runs what its files say: the sandbox image `image` and the registry ``config_path``
    `config_path` in its effective config, and no file it reads at start newer than the daemon.

    When a file changed after the daemon started (this run's `written`, an operator's edit, an
    earlier run killed before its restart), containerd is restarted and must come back with its
    CRI plugin and those values within `wait` seconds; if it does not, the previous `config` is
    put back (when this run wrote it), containerd restarted, and the host fails with one line.
    Once more than ``rollout.allowed`` hosts have failed, later batches keep their previous config
    and no restart. Use ``_parallel=`` for the batch size. Running pod sandboxes survive: their
    shims outlive the daemon.
    """
    wanted = Wanted(image, config_path, runtime_shape(containerd_version), wait)
    running = host.get_fact(ContainerdDaemon)
    changed = running.changed_since_start() if running else [config]
    if not changed and not state.is_executing and written.will_change:
        changed = [config]
    if changed:
        script = CONTAINERD_RESTART.format(wait=wait)
        scripts = {"restart": script, "back": script}
        runtime = Service("containerd", "containerd", scripts, wait, wanted.verify, "with its CRI plugin")
        why = f"{', '.join(changed)} changed after containerd started"
        yield FunctionCommand(
            _apply, (rollout, runtime, "restart", [Written(written, config, config + BACKUP)], why), {}
        )
        return
    assert running is not None
    wrong = wanted.differences(running)
    if wrong:
        yield FunctionCommand(_fail, (f"{wrong} (an imports file overriding {config}?): remove it there",), {})
        return
    host.noop(f"containerd runs its config ({', '.join(sorted(running.files) or [config])})")


# --- CRI-O --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrioWanted:
    """What the running CRI-O's config (``crio status config``) must hold."""

    values: dict[str, str]  # [crio.image] key -> value; global_auth_file only where podinfra sets it
    socket: str

    def differences(self, found: dict[str, Any] | None) -> str:
        if found is None:
            return f"CRI-O does not answer `crio status config` on {self.socket}"
        wrong = [
            f"{key} = {found.get(key)!r}, not {want!r}" for key, want in self.values.items() if found.get(key) != want
        ]
        return f"the running CRI-O's config (crio status config) has {'; '.join(wrong)}" if wrong else ""

    def verify(self, host: Host) -> str:
        command = StringCommand("crio", "status", "--socket", shlex.quote(self.socket), "config", "2>/dev/null")
        ok, output = host.run_shell_command(command, print_output=False)
        return self.differences(crio.running_config("\n".join(output.stdout_lines)) if ok else None)


@operation()
def crio_restarted(
    image: str,
    auth_file: str | None,
    written: Sequence[Written],
    registries: Sequence[OperationMeta],
    rollout: Rollout,
    socket: str = crio.SOCKET,
    wait: int = 30,
) -> Generator[Any]:
    """CRI-O runs what its files say: the running daemon's ``pause_image`` is `image` and, with
    credentials, its ``global_auth_file`` is `auth_file`.

    A running CRI-O re-reads pause_image and registries.conf on SIGHUP, so a change of those alone is a
    reload; a global_auth_file it does not run yet (read at start only), or a CRI-O that does not run, is a
    restart. Either must bring the wanted values into ``crio status config`` within `wait` seconds, or the
    files this run wrote (`written`) get their previous text back, CRI-O is restarted, and the host fails
    with one line; the batches and ``rollout`` guard as for containerd. Running pods survive a restart: each
    container's conmon outlives the daemon.
    """
    values = {"pause_image": image, **({"global_auth_file": auth_file} if auth_file else {})}
    wanted = CrioWanted(values, socket)
    running = host.get_fact(CrioRunningConfig, socket=socket)
    wrong = wanted.differences(running)
    if running is None or (auth_file and running.get("global_auth_file") != auth_file):
        action = "restart"
    elif wrong or (not state.is_executing and any(meta.will_change for meta in registries)):
        action = "reload"
    else:
        host.noop(f"CRI-O runs its config (pause_image {image!r})")
        return
    line = f"pause_image = {_toml_string(image)}"
    scripts = {
        name: CRIO_APPLY.format(action=action, wait=wait, socket=shlex.quote(socket), line=shlex.quote(wait_for))
        for name, action, wait_for in (
            ("restart", "restart", line),
            ("reload", "reload", line),
            ("back", "restart", "["),
        )
    }
    runtime = Service("CRI-O", "crio", scripts, wait, wanted.verify, "running the wanted pause_image")
    why = wrong or "registries.conf changed after CRI-O last read it"
    yield FunctionCommand(_apply, (rollout, runtime, action, written, why), {})


def _toml_string(value: str) -> str:
    """As ``crio status config`` (BurntSushi/toml) writes a plain string value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
