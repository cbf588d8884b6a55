"""What podinfra.node.pyinfra_internals assumes of pyinfra, pinned against the installed pyinfra: a test
here fails first when a pyinfra release changes how it batches hosts or where a run's data can live."""

from __future__ import annotations

from typing import Any

import gevent
import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api import operations as pyinfra_operations
from pyinfra.api.state import StateOperationMeta
from pyinfra.context import ctx_state, state

from podinfra.node import pyinfra_internals
from podinfra.node.restart import Rollout, rollout


def fleet(names: list[str]) -> State:
    inventory = Inventory((names, {}))  # type: ignore[no-untyped-call]
    found = State(inventory, Config())  # type: ignore[no-untyped-call]
    for host in inventory:
        found.activate_host(host)
    return found


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_rollout_batches_are_the_batches_pyinfra_runs(monkeypatch, batch):
    """Run one operation through pyinfra's own _run_single_op with _parallel: the hosts that run together
    are the ones Rollout.batch_of puts in one batch."""
    inventory = Inventory(([f"h{i}" for i in range(7)], {}))  # type: ignore[no-untyped-call]
    state = State(inventory, Config())  # type: ignore[no-untyped-call]
    for host in inventory:
        state.activate_host(host)
    state.op_meta["op"] = StateOperationMeta(op_order=(1,))
    state.op_meta["op"].global_arguments.update({"_serial": False, "_parallel": batch, "_run_once": False})
    seen: list[tuple[int, str]] = []
    running_batch = [0]

    def record(state: State, host: Any, op_hash: str) -> bool:
        seen.append((running_batch[0], host.name))
        gevent.sleep(0)
        return True

    original_iwait = gevent.iwait

    def iwait(greenlets: Any) -> Any:
        yield from original_iwait(greenlets)
        running_batch[0] += 1

    monkeypatch.setattr(pyinfra_operations, "_run_host_op_with_context", record)
    monkeypatch.setattr(pyinfra_operations.gevent, "iwait", iwait)
    with ctx_state.use(state):
        pyinfra_operations._run_single_op(state, "op")
    rollout = Rollout(0, batch)
    assert {name: index for index, name in seen} == {host.name: rollout.batch_of(state, host) for host in inventory}


def test_a_runs_data_lives_on_that_runs_state_through_the_context():
    first, second = fleet(["a"]), fleet(["b"])
    with ctx_state.use(first):
        kept = rollout(0, 1)
        assert rollout(0, 1) is kept, "every host of one run counts in the same rollout"
        assert rollout(1, 1) is not kept
    with ctx_state.use(second):
        assert rollout(0, 1) is not kept, "another run starts afresh"
    assert pyinfra_internals.run_data(first, "rollouts", dict)[(0, 1)] is kept
    with ctx_state.use(first):
        assert getattr(state, "podinfra_rollouts") is getattr(first, "podinfra_rollouts")  # noqa: B009
