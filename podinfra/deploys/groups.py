"""Which hosts a deploy acts on: the inventory group its argument or its host data names.

if in_group("podinfra_node_group", "nodes"):   # --data podinfra_node_group=k8s_workers
    node_runtime()
"""

from __future__ import annotations

from pyinfra.api.exceptions import DeployError
from pyinfra.api.host import Host
from pyinfra.context import host, state


def group_hosts(key: str, default: str, name: str | None = None, argument: str = "") -> list[Host]:
    """The hosts of group `name`, else of the group host data `key` names (`default` when unset).

    A group the inventory does not have, or that has no hosts, stops the run with one line: a
    deploy that does nothing and exits 0 would hide a misspelt group. `argument` names the deploy's own
    way to name it, e.g. ``pause_mirror(nodes=GROUP)``."""
    group = name if name is not None else host.data.get(key, default)
    hosts = state.inventory.get_group(group, []) if isinstance(group, str) else []
    if not hosts:
        groups = ", ".join(sorted(g for g in state.inventory.groups if g != "all")) or "none"
        how = " or ".join(filter(None, (argument, f"--data {key}=GROUP" if name is None else "")))
        raise DeployError(
            f"inventory group {group!r} has no hosts (the inventory's groups: {groups}): name the group with {how}"
        )
    return list(hosts)


def in_group(key: str, default: str) -> bool:
    """Whether this host is in the group that host data `key` names (`default` when unset); a group
    with no hosts stops the run (:func:`group_hosts`)."""
    return host in group_hosts(key, default)
