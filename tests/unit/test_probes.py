"""Removing probe sandboxes a killed run left: the runtime is asked again until its timeout, and one it
will not remove is said in check 1 (WARN), never taken for a missing CRI."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from podinfra.check.cri import CRIError, Runtime
from podinfra.suite import probes
from podinfra.suite import test_checks as checks
from podinfra.suite.node import CRI
from tests.unit.test_crio import crio_node, run_check
from tests.unit.test_crio import settings as settings  # the fixture

STARTING = 'failed to set removing state for container "c1": container is in starting state, can\'t be removed'


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class StartingContainer:
    """A runtime stub whose container `c1` is still in StartContainer for the first `busy` RemoveContainer asks."""

    def __init__(self, busy: int):
        self.busy, self.removed = busy, []

    def ListContainers(self, request: Any, timeout: float) -> Any:
        return SimpleNamespace(containers=[] if "c1" in self.removed else [SimpleNamespace(id="c1")])

    def StopContainer(self, request: Any, timeout: float) -> None:
        pass

    def RemoveContainer(self, request: Any, timeout: float) -> None:
        if self.busy:
            self.busy -= 1
            raise Refused(grpc.StatusCode.UNKNOWN, STARTING)
        self.removed.append(request.container_id)

    def StopPodSandbox(self, request: Any, timeout: float) -> None:
        pass

    def RemovePodSandbox(self, request: Any, timeout: float) -> None:
        self.removed.append(request.pod_sandbox_id)


def runtime(stub: StartingContainer, timeout: float) -> Runtime:
    found = Runtime("unix:///nonexistent.sock", timeout=timeout)
    found.runtime = stub
    return found


def test_a_container_still_starting_is_asked_again_until_it_can_be_removed():
    stub = StartingContainer(busy=3)
    runtime(stub, timeout=30).remove_sandbox("sb1")
    assert stub.removed == ["c1", "sb1"] and stub.busy == 0


def test_removal_gives_up_at_the_runtime_timeout_with_the_runtime_s_words():
    stub = StartingContainer(busy=1000)
    with pytest.raises(CRIError, match="RemoveContainer: UNKNOWN: .*starting state"):
        runtime(stub, timeout=0.3).remove_sandbox("sb1")
    assert stub.busy > 990, "asked a few times, backing off, not in a tight loop"


def test_a_runtime_that_hangs_is_not_asked_again():
    stub = StartingContainer(busy=1000)
    stub.RemoveContainer = lambda request, timeout: (_ for _ in ()).throw(  # type: ignore[method-assign]
        Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    )
    with pytest.raises(CRIError, match="DEADLINE_EXCEEDED"):
        runtime(stub, timeout=30).remove_sandbox("sb1")
    with pytest.raises(CRIError, match="DEADLINE_EXCEEDED"):  # slow: said as slow by check 1, not as a kept probe
        probes.remove_leftovers(Leftovers(set(), CRIError("RemoveContainer: DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")))  # type: ignore[arg-type]


class Leftovers:
    def __init__(self, stuck: set[str], error: CRIError | None = None):
        self.stuck, self.error = stuck, error or CRIError(f"RemoveContainer: UNKNOWN: {STARTING}", "UNKNOWN")

    def sandboxes(self, **_: Any) -> list[str]:
        return ["sb-gone", "sb-stuck"]

    def remove_sandbox(self, sandbox_id: str) -> None:
        if sandbox_id in self.stuck or self.error.code == "DEADLINE_EXCEEDED":
            raise self.error


def test_a_leftover_the_runtime_keeps_is_a_warn_in_check_1_not_a_missing_cri(settings):
    removed, kept = probes.remove_leftovers(Leftovers({"sb-stuck"}))  # type: ignore[arg-type]
    assert removed == ["sb-gone"] and list(kept) == ["sb-stuck"]
    found = CRI(
        Leftovers(set()), "/var/run/crio/crio.sock", ("cri-o", "1.36.3"), removed_leftovers=1, kept_leftovers=kept
    )  # type: ignore[arg-type]
    record = run_check(checks.test_runtime_answers_on_its_cri_socket, "1", crio_node(settings), found)
    assert record.status == "warn"
    assert "removed 1 probe sandbox(es) left by an interrupted run" in record.actual
    assert "could not remove 1 probe sandbox(es)" in record.actual and "starting state" in record.actual
    assert "podinfra-check" in record.remediation
