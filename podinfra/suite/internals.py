"""Where the suite leans on pytest-testinfra and pytest-xdist beyond their documented API, fenced here so that
a release that changes them breaks this module alone (pyproject.toml bounds pytest-testinfra to the minor
release it was checked on; the lab's check tests run every one of these against real nodes).

1. testinfra parametrizes each test with its host under the private fixture name ``_testinfra_host``; the
   plugin reads it from a test's ``callspec`` to know whose result a report is, also when the ``host``
   fixture never ran (a setup error).
2. testinfra's backends keep how they reach a host (``NAME``, ``ssh_config``, ``ssh_identity_file``,
   ``host.name/user/port``) as undocumented attributes; the suite's CRI forward opens its own SSH
   master to the same host with them.
3. pytest-xdist's ``LoadGroupScheduling`` groups tests by ``_split_scope``; the suite's scheduler groups by
   the host in the test id instead (xdist 3.8 reads ``xdist_group`` marks before a plugin can set them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HOST_PARAM = "_testinfra_host"
SSH_BACKENDS = ("ssh", "safe-ssh", "paramiko")
HOST_SCHEMES = ("ssh://", "paramiko://", "local://")


def host_of(item: pytest.Item) -> Any | None:
    """The testinfra host a test was parametrized with (None without --hosts)."""
    params = getattr(item, "callspec", None)
    return params.params.get(HOST_PARAM) if params else None


@dataclass(frozen=True)
class SshTarget:
    """How a testinfra backend reaches its host: ``kind`` is its backend name ("local", "ssh", ...)."""

    kind: str
    name: str
    user: str | None = None
    port: int | str | None = None
    ssh_config: Path | None = None
    identity: str | None = None


def ssh_target(backend: Any) -> SshTarget:
    if backend.NAME not in SSH_BACKENDS:
        return SshTarget(backend.NAME, "localhost")
    config = getattr(backend, "ssh_config", None)
    return SshTarget(
        backend.NAME,
        backend.host.name,
        backend.host.user,
        backend.host.port,
        Path(config) if config else None,
        getattr(backend, "ssh_identity_file", None),
    )


def scheduler_by_host(config: pytest.Config, log: Any) -> Any:
    """xdist's loadgroup scheduling, grouped by the host in each test id (``...[ssh://node1]``)."""
    from xdist.scheduler import LoadGroupScheduling

    class ByHost(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            host = nodeid.rpartition("[")[2].rstrip("]")
            return host if host.startswith(HOST_SCHEMES) else str(super()._split_scope(nodeid))

    return ByHost(config, log)
