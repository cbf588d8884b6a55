"""Which hosts a deploy file acts on: the inventory group its data names.

if in_group("podinfra_node_group", "nodes"):   # --data podinfra_node_group=k8s_workers
    node_runtime()
"""

from __future__ import annotations

from pyinfra.api.exceptions import DeployError
from pyinfra.context import host, state


def in_group(key: str, default: str) -> bool:
    """Whether this host is in the group that host data `key` names (`default` when unset).

    A group the inventory does not have, or that has no hosts, stops the run with one line: a
    deploy that does nothing and exits 0 would hide a misspelt group."""
    name = host.data.get(key, default)
    if not isinstance(name, str) or not state.inventory.get_group(name, []):
        groups = ", ".join(sorted(g for g in state.inventory.groups if g != "all")) or "none"
        raise DeployError(
            f"inventory group {name!r} has no hosts (the inventory's groups: {groups}): "
            f"name the group with --data {key}=GROUP"
        )
    return name in host.groups
