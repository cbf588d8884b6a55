"""The checks' waits (podinfra/suite/waits.py) on a fake clock: a condition with a deadline, backoff, and
slowness as its own verdict (WARN), apart from a wrong answer (FAIL)."""

from __future__ import annotations

import subprocess

import pytest

from podinfra.check.cri import CRIError
from podinfra.suite import waits
from podinfra.suite.waits import Deadline, FakeClock, Slow, wait_for


def asker(clock: FakeClock, answers: list[str], cost: float = 0.0):
    """An ask that takes `cost` seconds of the clock and gives the next answer (the last one forever)."""
    asked: list[tuple[float, float]] = []

    def ask(left: float) -> str:
        asked.append((clock.t, left))
        clock.t += cost
        return answers[min(len(asked) - 1, len(answers) - 1)]

    return ask, asked


def test_a_final_answer_at_once_is_not_waited_for():
    clock = FakeClock()
    ask, asked = asker(clock, ["pause"])
    assert wait_for("PID 1", ask, lambda a: a.startswith("runc:"), Deadline(30, clock)) == ("pause", 0.0)
    assert asked == [(0.0, 30.0)]


def test_pending_answers_are_asked_again_with_backoff_up_to_two_seconds():
    clock = FakeClock()
    ask, asked = asker(clock, ["runc:[2:INIT]"] * 8 + ["pause"])
    answer, waited = wait_for("PID 1", ask, lambda a: a.startswith("runc:"), Deadline(30, clock))
    assert answer == "pause"
    starts = [t for t, _ in asked]
    gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert waited == pytest.approx(sum(gaps))


def test_each_ask_is_told_what_is_left_of_the_budget():
    clock = FakeClock()
    ask, asked = asker(clock, ["503", "503", "200"], cost=4.0)
    wait_for("registry", ask, lambda a: a == "503", Deadline(10, clock))
    assert [round(left, 6) for _, left in asked] == [10.0, 5.9, 1.7]


def test_past_the_deadline_is_slow_naming_the_wait_the_limit_and_the_last_answer():
    clock = FakeClock()
    ask, asked = asker(clock, ["SANDBOX_NOTREADY"], cost=1.0)
    with pytest.raises(Slow) as found:
        wait_for("the probe sandbox to become Ready", ask, lambda a: a != "SANDBOX_READY", Deadline(5, clock))
    slow = found.value
    assert slow.waited >= 5 and slow.limit == 5 and slow.last == "SANDBOX_NOTREADY"
    assert clock.t < 5 + 1 + 2  # one last ask after the deadline at most, no sleeping past it
    assert str(slow).startswith("the probe sandbox to become Ready: no answer within the limit, waited ")
    assert "of 5s (check_probe_timeout) (last answer: SANDBOX_NOTREADY)" in str(slow)


def test_the_interrupt_checkpoint_runs_before_every_pause():
    clock = FakeClock()
    ask, _ = asker(clock, ["no", "no", "yes"])
    seen: list[float] = []
    wait_for("x", ask, lambda a: a == "no", Deadline(30, clock), between=lambda: seen.append(clock.t))
    assert seen == [0.0, 0.1]


def test_slowness_is_told_apart_from_an_answer():
    assert waits.is_slow(Slow("x", 1, 1))
    assert waits.is_slow(CRIError("ExecSync: DEADLINE_EXCEEDED: took too long", "DEADLINE_EXCEEDED"))
    assert waits.is_slow(subprocess.TimeoutExpired(["ssh"], 30))
    assert not waits.is_slow(CRIError("RunPodSandbox: UNKNOWN: cni failed", "UNKNOWN"))
    assert not waits.is_slow(AssertionError("PID 1 is sleep"))


@pytest.mark.parametrize(
    ("rc", "status", "again"),
    [
        (28, 0, True),  # curl timed out
        (56, 0, True),  # connection dropped
        (255, 0, True),  # ssh did not answer
        (0, 503, True),  # registry busy
        (0, 504, True),
        (0, 200, False),
        (0, 401, False),  # a refusal is an answer: FAIL
        (0, 404, False),
        (7, 0, False),  # connection refused
        (60, 0, False),  # TLS: the wrong CA
    ],
)
def test_the_registry_is_asked_again_only_when_slow_or_busy(rc: int, status: int, again: bool):
    assert waits.registry_pending(rc, status) is again


def test_a_registry_slow_then_answering_passes_within_the_budget():
    clock = FakeClock()
    replies = iter([(28, 0), (0, 503), (0, 200)])

    def ask(left: float) -> tuple[int, int]:
        clock.t += min(10, left) if clock.t < 10 else 0.1  # the first ask times out after its 10 s
        return next(replies)

    (rc, status), waited = wait_for("registry", ask, lambda a: waits.registry_pending(*a), Deadline(30, clock))
    assert (rc, status) == (0, 200) and 10 < waited < 30


def test_an_orphan_left_a_zombie_for_the_whole_budget_is_a_wrong_answer_and_one_still_running_is_slow():
    assert waits.orphan_verdict("Z (zombie)") == "fail"
    assert waits.orphan_verdict("S (sleeping)") == "warn"
    assert waits.orphan_verdict("R (running)") == "warn"
