"""pyinfra operations for node configuration: atomic config files and a guarded containerd restart."""

from __future__ import annotations

import functools
import hashlib
import posixpath
import shlex
from collections.abc import Generator
from io import StringIO

from pyinfra import logger
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host
from pyinfra.facts.files import File, Sha256File

BACKUP = ".podinfra-backup"


@operation()
def config_file(path: str, content: str, mode: str = "0644") -> Generator[object, None, None]:
    """Make `path` hold exactly `content`, written atomically with the old file kept as a backup.

    The new text goes to a temporary file beside `path` and is renamed over it, so a node never
    holds a half-written config, even when the run is killed.

    + path: file on the node
    + content: the whole new text
    + mode: octal mode, e.g. "0600" for files holding credentials

    **Example:**

    .. code:: python

        config_file(name="containerd config", path="/etc/containerd/config.toml", content=text)
    """
    current = host.get_fact(Sha256File, path=path)
    if current == hashlib.sha256(content.encode()).hexdigest():
        info = host.get_fact(File, path=path)
        # pyinfra's File fact gives the mode as the octal digits read as a decimal int (0644 -> 644).
        if info and info["mode"] == int(mode) and info["user"] == "root":
            host.noop(f"{path} is up to date")
            return
        yield StringCommand("chown", "root:root", path, "&&", "chmod", mode, path)
        return
    new = f"{path}.podinfra-new"
    yield StringCommand("mkdir", "-p", posixpath.dirname(path))
    # Created 0600 before the upload, so a file with credentials is never readable by others.
    yield StringCommand("rm", "-f", new, "&&", "umask", "077", "&&", "touch", new)
    yield FileUploadCommand(StringIO(content), new)
    quoted, backup, staged = shlex.quote(path), shlex.quote(path + BACKUP), shlex.quote(new)
    keep = f"if [ -f {quoted} ]; then cp -p {quoted} {backup}; fi"
    yield StringCommand(f"chown root:root {staged} && chmod {mode} {staged} && {keep} && mv -f {staged} {quoted}")


RESTART = """\
restart_ok() {{
  systemctl restart containerd || return 1
  for _ in $(seq 1 {wait}); do
    if ctr version >/dev/null 2>&1 \\
      && ctr plugins ls 2>/dev/null | grep -Eq '^io\\.containerd\\.grpc\\.v1 +cri +.* ok *$'; then
      containerd config dump 2>/dev/null | grep -qF {expect}
      return
    fi
    sleep 1
  done
  return 1
}}
if ! restart_ok; then
  {restore}
  restart_ok || true
  echo "containerd did not come back with the new config {config}, or its effective config (containerd config dump)" \\
    "does not name {image} (an imports drop-in overriding it?): previous config restored, containerd restarted" >&2
  exit 1
fi
"""


class Rollout:
    """Failed restarts counted across one run, so that later batches stop once too many have failed.

    Batches are pyinfra's own: ``_parallel`` cuts ``state.inventory.get_active_hosts()`` (a set,
    so in no fixed order) into slices of `batch` hosts. A host is stopped by failures in earlier
    batches only, never by a peer of its own batch.
    """

    def __init__(self, allowed: int, batch: int):
        self.allowed, self.batch = allowed, batch
        self.failed: dict[str, int] = {}  # host name -> its batch

    def restart(self, state: State, host: Host, script: str, restore: str) -> bool:
        mine = [h.name for h in state.inventory.get_active_hosts()].index(host.name) // self.batch
        earlier = sum(1 for batch in self.failed.values() if batch < mine)
        if earlier > self.allowed:
            host.run_shell_command(StringCommand(restore), print_output=False)
            logger.error(
                f"{host.print_prefix}rollout stopped after {earlier} failed node(s) in earlier batches "
                f"(max_failed_nodes={self.allowed}): previous config kept, containerd not restarted"
            )
            return False
        ok, output = host.run_shell_command(StringCommand(script), print_output=False)
        for line in output.stderr_lines:
            logger.error(f"{host.print_prefix}{line}")
        if not ok:
            self.failed[host.name] = mine
        return bool(ok)


@functools.cache
def rollout(allowed: int, batch: int) -> Rollout:
    """The one Rollout of this pyinfra run (deploy files run once per host; this module once)."""
    return Rollout(allowed, batch)


@operation()
def containerd_restarted(
    image: str, rollout: Rollout, config: str = "/etc/containerd/config.toml", wait: int = 30
) -> Generator[object, None, None]:
    """Restart containerd and see its CRI plugin answer with `image` in its effective config; if it
    does not, put the backup config back. Once more than ``rollout.allowed`` hosts have failed,
    later hosts get their previous config back without a restart.

    Use with ``_if=`` the config file operation's ``did_change`` (containerd restarts only when its
    config changed) and ``_parallel=`` for the batch size. Running pod sandboxes survive: their
    shims outlive the daemon.
    """
    quoted, backup = shlex.quote(config), shlex.quote(config + BACKUP)
    restore = f"if [ -f {backup} ]; then cp -p {backup} {quoted}; fi"
    script = RESTART.format(wait=wait, config=quoted, restore=restore, image=image, expect=shlex.quote(f'"{image}"'))
    yield FunctionCommand(_restart, (rollout, script, restore), {})


def _restart(state: State, host: Host, rollout: Rollout, script: str, restore: str) -> bool:
    return rollout.restart(state, host, script, restore)
