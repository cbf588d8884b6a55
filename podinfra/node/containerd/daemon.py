"""What the running containerd reads: its config file (from its command line), the files merged into
it, the effective config, and whether any of those files changed after the daemon started.

containerd reads ``config.toml`` and its ``imports`` once, at start; ``hosts.toml`` files are read
at each pull. So a file newer than the daemon means the daemon runs an older config than the one
on disk: a restart is pending. ``PROBE`` is one shell script (for a pyinfra fact and for the node
suite alike); ``parse`` reads its output.

>>> d = parse(["pid=7", "started=1000 250 100", "config=/c.toml", "file=1004 /c.toml", "--- dump", "version = 3"])
>>> d.changed_since_start()
['/c.toml']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from podinfra.node.containerd.shape import Shape
from podinfra.tomlpath import lookup

DEFAULT_CONFIG = "/etc/containerd/config.toml"
DUMP_MARK = "--- dump"

# The start time is boot time (whole seconds) + the process's start in clock ticks: it is up to a second
# early, so only a file at least a second newer counts as changed after the start (never a false alarm).
PROBE = r"""
pid=$(systemctl show -p MainPID --value containerd 2>/dev/null)
case "$pid" in ""|0) pid=$(pidof -s containerd 2>/dev/null);; esac
config=/etc/containerd/config.toml
if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
  echo "pid=$pid"
  ticks=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)
  echo "started=$(sed -n 's/^btime //p' /proc/stat) $ticks $(getconf CLK_TCK)"
  config=$(tr '\0' '\n' < "/proc/$pid/cmdline" | {
    found=/etc/containerd/config.toml; prev=
    while IFS= read -r arg; do
      case "$prev" in -c|--config) found=$arg;; esac
      case "$arg" in --config=*) found=${arg#--config=};; esac
      prev=$arg
    done
    echo "$found"
  })
fi
echo "config=$config"
dump=$(containerd --config "$config" config dump 2>/dev/null)
[ -f "$config" ] && echo "file=$(stat -c %Y "$config") $config"
for pattern in $(printf '%s\n' "$dump" | sed -n 's/^imports = \[\(.*\)\]$/\1/p' | tr ',' ' ' | tr -d "\"'"); do
  for file in $pattern; do
    [ -f "$file" ] && [ "$file" != "$config" ] && echo "file=$(stat -c %Y "$file") $file"
  done
done
echo "--- dump"
printf '%s\n' "$dump"
"""


@dataclass(frozen=True)
class Daemon:
    """The running containerd as the probe saw it; ``pid`` None when it does not run."""

    pid: int | None
    started: float | None
    config: str
    files: dict[str, int] = field(default_factory=dict)  # path -> mtime (whole seconds)
    dump: str = ""

    def changed_since_start(self) -> list[str]:
        """Files the daemon reads at start that changed after it started (all of them when it does not run)."""
        if self.pid is None or self.started is None:
            return sorted(self.files) or [self.config]
        return sorted(path for path, mtime in self.files.items() if mtime >= self.started + 1)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The effective config (``config dump``) parsed; {} when it is not TOML."""
        try:
            return tomllib.loads(self.dump)
        except tomllib.TOMLDecodeError:
            return {}

    def effective(self, shape: Shape) -> tuple[Any, Any]:
        """(sandbox image, registry config_path) in the effective config, None where unset."""
        return lookup(self.document, shape.sandbox_path), lookup(self.document, shape.config_path_path)


def parse(lines: list[str]) -> Daemon:
    """The probe's output, as lines."""
    values: dict[str, str] = {}
    files: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line == DUMP_MARK:
            dump = "\n".join(lines[index + 1 :])
            break
        key, _, value = line.partition("=")
        if key == "file":
            mtime, _, path = value.partition(" ")
            if mtime.isdigit():
                files[path] = int(mtime)
        else:
            values[key] = value
    else:
        dump = ""
    started = None
    parts = values.get("started", "").split()
    if len(parts) == 3 and all(p.isdigit() for p in parts) and int(parts[2]) > 0:
        started = int(parts[0]) + int(parts[1]) / int(parts[2])
    pid = values.get("pid", "")
    return Daemon(int(pid) if pid.isdigit() else None, started, values.get("config", DEFAULT_CONFIG), files, dump)
