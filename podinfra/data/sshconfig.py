"""OpenSSH client config blocks: one ``Host`` entry per machine, for ``ssh -F FILE NAME``.

>>> print(block("node1", hostname="10.0.0.11", user="root", batch=True), end="")
Host node1
  HostName 10.0.0.11
  User root
  BatchMode yes
"""

from __future__ import annotations

from collections.abc import Sequence


def block(
    *aliases: str,
    hostname: str | None = None,
    user: str | None = None,
    port: int | str | None = None,
    identity: str | None = None,
    known_hosts: str | None = None,
    strict: str | None = None,
    batch: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """A ``Host`` block for `aliases`; unset options are left to ssh's defaults (and ~/.ssh/config)."""
    lines = [f"Host {' '.join(aliases)}"]
    options = (
        ("HostName", hostname),
        ("User", user),
        ("Port", port),
        ("IdentityFile", identity),
        ("IdentitiesOnly", "yes" if identity else None),
        ("UserKnownHostsFile", known_hosts),
        ("StrictHostKeyChecking", strict),
        ("BatchMode", "yes" if batch else None),
    )
    lines += [f"  {option} {value}" for option, value in options if value is not None]
    lines += [f"  {line}" for line in extra]
    return "\n".join(lines) + "\n"
