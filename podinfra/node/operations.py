"""pyinfra operations for node configuration: atomic config files, a containerd that runs what its
files say (restarted in batches, rolled back when it does not come back right), the pause image
pulled and pinned, and a host failed with one line.

    from podinfra.node.operations import config_file, containerd_restarted, pause_pinned

    written = config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    containerd_restarted(name="containerd runs it", image=image, config_path="/etc/containerd/certs.d",
                         containerd_version="2.1.9", config=path, written=written, _parallel=1)
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from pyinfra import logger
from pyinfra.api.command import (
    FileUploadCommand,
    FunctionCommand,
    QuoteString,
    StringCommand,
    make_formatted_string_command,
)
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.api.state import State
from pyinfra.context import host, state
from pyinfra.facts.files import File, FileContents, Sha256File
from pyinfra.operations.util.files import generate_color_diff

from podinfra.data.settings import MirrorSettings
from podinfra.errors import PodinfraError
from podinfra.images import probe_image
from podinfra.images.mirror import RegistrySource, Summary, copy_image, registry_source
from podinfra.images.oci import Image
from podinfra.images.reference import Reference, cri_name, under
from podinfra.images.registry import RegistryClient
from podinfra.node import pyinfra_internals
from podinfra.node.containerd import ctr, daemon
from podinfra.node.containerd.shape import Shape, runtime_shape
from podinfra.node.facts import ContainerdDaemon, ContainerdImages, ContainerImages
from podinfra.table import plural
from podinfra.tomlpath import dotted

BACKUP = ".podinfra-backup"


@operation()
def config_file(path: str, content: str, mode: str = "0644", secrets: Sequence[str] = ()) -> Generator[Any]:
    """Make `path` hold exactly `content`, root:root with `mode`, written atomically with the old file
    kept as ``PATH.podinfra-backup``.

    The new text goes to a temporary file beside `path` (created 0600 before anything is written to
    it) and is renamed over it, so a node never holds a half-written config, even when the run is
    killed. With ``--diff`` the change is shown, `secrets` masked.

    + path: file on the node
    + content: the whole new text
    + mode: octal mode, e.g. "0600" for files holding credentials
    + secrets: strings never shown in a diff

    **Example:**

    .. code:: python

        config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    """
    quoted = QuoteString(path)
    if host.get_fact(Sha256File, path=path) == hashlib.sha256(content.encode()).hexdigest():
        info = host.get_fact(File, path=path)
        # pyinfra's File fact gives the mode as the octal digits read as a decimal int (0644 -> 644).
        if info and info["mode"] == int(mode) and (info["user"], info["group"]) == ("root", "root"):
            host.noop(f"{path} is up to date")
            return
        yield StringCommand("chown", "root:root", quoted, "&&", "chmod", mode, quoted)
        return
    if state.config.DIFF:
        current = host.get_fact(FileContents, path=path)
        host.log(f"Will {'modify' if current is not None else 'create'} {path}", logger.info)
        lines = generate_color_diff([f"{line}\n" for line in current or []], content.splitlines(keepends=True))
        for line in lines:
            logger.info("  %s", _masked(line, secrets))
    new, backup = QuoteString(f"{path}.podinfra-new"), QuoteString(path + BACKUP)
    yield StringCommand("mkdir", "-p", QuoteString(posixpath.dirname(path)))
    yield StringCommand("rm", "-f", new, "&&", "(", "umask", "077", "&&", "touch", new, ")")
    yield FileUploadCommand(StringIO(content), f"{path}.podinfra-new")
    yield StringCommand(
        *("chown", "root:root", new, "&&", "chmod", mode, new, "&&"),
        *("if", "[", "-f", quoted, "];", "then", "cp", "-p", quoted, backup, ";", "fi", "&&"),
        *("mv", "-f", new, quoted),
    )


def _masked(line: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, "***")
    return line


@operation()
def failed(reason: str) -> Generator[Any]:
    """Fail this host, and only it, with `reason` as one line; its later operations do not run.

    For what is found on one node (a config containerd would refuse, no runtime): bad inventory
    data stops the whole run before any host is touched instead.
    """
    yield FunctionCommand(_fail, (reason,), {})


def _fail(state: State, host: Host, reason: str) -> bool:
    logger.error(f"{host.print_prefix}{reason}")
    return False


@operation()
def pause_pinned(image: str, certs_dir: str) -> Generator[Any]:
    """Pull `image` into containerd's ``k8s.io`` namespace through the registry mirrors of `certs_dir`,
    and label it pinned, so that image GC keeps it (containerd 1.6.22/1.7.3 and later honour the label).

    **Example:**

    .. code:: python

        pause_pinned(name="pause pinned", image="registry.k8s.io/pause:3.10", certs_dir="/etc/containerd/certs.d")
    """
    name = cri_name(image)
    found = host.get_fact(ContainerdImages).get(name)
    if found and found.pinned:
        host.noop(f"{name} is present and pinned")
        return
    if found is None:
        yield make_formatted_string_command(
            "ctr -n k8s.io images pull --hosts-dir {0} {1} >/dev/null", QuoteString(certs_dir), QuoteString(name)
        )
    yield make_formatted_string_command(
        "ctr -n k8s.io images label {0} {1}", QuoteString(name), QuoteString(f"{ctr.PINNED_LABEL}=pinned")
    )


@operation()
def old_pause_released(image: str, policy: str = "unpin") -> Generator[Any]:
    """After an upgrade: every other pause image in containerd's ``k8s.io`` namespace that no container
    (no pod sandbox) uses any more is unpinned (`policy` "unpin") or removed ("remove"); "keep" leaves it.

    Sandboxes made before the upgrade keep their pause until their pods are recreated, so an old pause
    that a container still uses is left pinned and said so.
    """
    if policy == "keep":
        host.noop("old pause images are kept (old_pause: keep)")
        return
    old = ctr.old_pauses(host.get_fact(ContainerdImages), cri_name(image))
    used = host.get_fact(ContainerImages)
    for stored in old:
        quoted = QuoteString(stored.name)
        if stored.name in used:
            host.noop(f"{stored.name} is still the pause of running sandboxes: kept")
        elif policy == "remove":
            yield make_formatted_string_command("ctr -n k8s.io images rm {0} >/dev/null", quoted)
        elif stored.pinned:
            yield make_formatted_string_command(
                "ctr -n k8s.io images label {0} {1}", quoted, QuoteString(f"{ctr.PINNED_LABEL}=")
            )
    if not old:
        host.noop("no other pause image")


RESTART = """\
systemctl restart containerd || exit 1
for _ in $(seq 1 {wait}); do
  if ctr version >/dev/null 2>&1 && ctr plugins ls 2>/dev/null | grep -Eq '^io\\.containerd\\.grpc\\.v1 +cri +.* ok *$'
  then exit 0
  fi
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
        yield FunctionCommand(_restart, (rollout, written, changed, config, wanted), {})
        return
    assert running is not None
    wrong = wanted.differences(running)
    if wrong:
        yield FunctionCommand(_fail, (f"{wrong} (an imports file overriding {config}?): remove it there",), {})
        return
    host.noop(f"containerd runs its config ({', '.join(sorted(running.files) or [config])})")


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


def _restart(
    state: State, host: Host, rollout: Rollout, written: OperationMeta, changed: list[str], config: str, wanted: Wanted
) -> bool:
    wrote = written.did_change()
    backup, quoted = QuoteString(config + BACKUP), QuoteString(config)
    restore = StringCommand("if", "[", "-f", backup, "];", "then", "cp", "-p", backup, quoted, ";", "fi")
    earlier = rollout.stopped(state, host)
    if earlier:
        if wrote:
            host.run_shell_command(restore, print_output=False)
        logger.error(
            f"{host.print_prefix}rollout stopped after {earlier} failed node(s) in earlier batches "
            f"(max_failed_nodes={rollout.allowed}): previous config kept, containerd not restarted"
        )
        return False
    problem = _restart_and_check(host, wanted)
    if not problem:
        return True
    rollout.failed[host.name] = rollout.batch_of(state, host)
    if not wrote:
        logger.error(
            f"{host.print_prefix}{problem}; {', '.join(changed)} changed after containerd started, "
            "not by podinfra in this run: fix it by hand"
        )
        return False
    host.run_shell_command(restore, print_output=False)
    back, _ = host.run_shell_command(StringCommand(RESTART.format(wait=wanted.wait)), print_output=False)
    logger.error(
        f"{host.print_prefix}{problem}: previous config restored, containerd restarted"
        + ("" if back else ", and it did not come back either (journalctl -u containerd)")
    )
    return False


def _restart_and_check(host: Host, wanted: Wanted) -> str:
    """Restart containerd; what is wrong once it is back ('' when its CRI answers with the wanted values)."""
    ok, _ = host.run_shell_command(StringCommand(RESTART.format(wait=wanted.wait)), print_output=False)
    if not ok:
        return f"containerd did not come back with its CRI plugin within {wanted.wait}s (journalctl -u containerd)"
    ok, output = host.run_shell_command(StringCommand(daemon.PROBE), print_output=False)
    return (
        wanted.differences(daemon.parse(output.stdout_lines)) if ok else "the containerd probe failed after the restart"
    )


# The data keys a TLS hint names, in place of the command line's flags.
SOURCE_KEYS = ("pause_source_ca", "pause_source_insecure")


@operation()
def image_mirrored(image: Reference, mirror: MirrorSettings, dest: RegistryClient) -> Generator[Any]:
    """Copy `image` into the local registry (`dest`) unless its tag already holds the source's digest.

    **Example:**

    .. code:: python

        image_mirrored(name="pause", image=parse("registry.k8s.io/pause:3.10"), mirror=settings, dest=client)
    """
    ca = str(mirror.source_ca) if mirror.source_ca else None
    source = registry_source(image, mirror.source, mirror.source_insecure, ca, flags=SOURCE_KEYS)
    repo = under(mirror.prefix, image.repository)
    try:
        wanted = source.manifest(image.reference).digest
    except PodinfraError as e:
        yield FunctionCommand(_fail, (str(e),), {})
        return
    try:
        held = dest.manifest_digest(repo, image.tag or wanted)
    except PodinfraError:
        # Not answering yet: local_registry, earlier in this run, makes it. The copy asks it again (and
        # fails this host with one line if it still does not answer).
        held = None
    if held == wanted:
        host.noop(f"{dest.host}/{repo}:{image.tag} already is {wanted}")
        return
    yield FunctionCommand(_copy, (source, image, dest, repo), {})


def _copy(state: State, host: Host, source: RegistrySource, image: Reference, dest: RegistryClient, repo: str) -> bool:
    summary = Summary()
    try:
        copy_image(source, image.reference, dest, repo, image.tag, summary)
    except PodinfraError as e:
        return _fail(state, host, str(e))
    uploaded, sent = plural(summary.blobs_uploaded, "blob"), plural(summary.bytes_sent, "byte")
    logger.info(f"{host.print_prefix}{image} -> {dest.host}/{repo}: {uploaded} uploaded, {sent} sent")
    return True


@operation()
def probe_image_pushed(image: Image, mirror: MirrorSettings, dest: RegistryClient) -> Generator[Any]:
    """Push check 8's probe image (built on the control host) into the local registry unless it holds it."""
    repo = under(mirror.prefix, probe_image.REPOSITORY)
    try:
        held = dest.manifest_digest(repo, probe_image.TAG)
    except PodinfraError:
        held = None  # as in image_mirrored: asked again when the push runs
    if held == image.manifest.digest:
        host.noop(f"{dest.host}/{repo}:{probe_image.TAG} already is {held}")
        return
    yield FunctionCommand(_push_probe, (image, dest, repo), {})


def _push_probe(state: State, host: Host, image: Image, dest: RegistryClient, repo: str) -> bool:
    try:
        probe_image.push(dest, repo, image)
    except PodinfraError as e:
        return _fail(state, host, str(e))
    return True
