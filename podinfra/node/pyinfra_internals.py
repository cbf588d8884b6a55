"""Where podinfra leans on pyinfra beyond its documented API: two places, fenced here so that a pyinfra
release that changes them breaks this module alone, and tests/unit/test_pyinfra_internals.py (which pins
both against the installed pyinfra). pyproject.toml bounds pyinfra to the minor release they were checked on.

1. Data of one run. An operation is called once per host, but a rollout counts failures over every host
   of the run. pyinfra gives operations no place for such data, so it is kept as an attribute of the
   run's State (``pyinfra.context.state`` forwards attribute access to the State of the current run).
2. The batches of ``_parallel=N``. pyinfra runs an operation on ``state.inventory.get_active_hosts()``
   cut into slices of N, in that order (``pyinfra.api.operations._run_single_op``; not documented). The
   rollout stops later batches after failures in earlier ones, so it cuts the hosts the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")
PREFIX = "podinfra_"  # podinfra's attributes on pyinfra's State, apart from pyinfra's own


def run_data(state: Any, key: str, new: Callable[[], T]) -> T:
    """This run's value under `key` (kept on `state`, pyinfra's State or its context proxy), made by
    `new()` the first time it is asked for."""
    name = PREFIX + key
    found = getattr(state, name, None)
    if found is None:
        found = new()
        setattr(state, name, found)
    return cast(T, found)


def batch_of(state: Any, host: Any, size: int) -> int:
    """The batch in which pyinfra runs `host` for an operation with ``_parallel=size`` (0 first)."""
    return [h.name for h in state.inventory.get_active_hosts()].index(host.name) // size
