"""Waiting on a node for a condition, with a deadline, never for a fixed time; and the verdict on slowness.

A check asks again, backing off, until the answer is final or its budget (host data
``check_probe_timeout``, the one place every wait of a check derives from) is spent. An answer that
was still "not yet" at the deadline is :class:`Slow`: the check is not proved (WARN, naming the
latency and the limit), never FAIL. FAIL is for a wrong answer or a refusal.

>>> clock = FakeClock()
>>> answers = iter(["runc:[2:INIT]", "runc:[2:INIT]", "pause"])
>>> wait_for("PID 1", lambda left: next(answers), lambda a: a.startswith("runc:"), Deadline(30, clock))
('pause', 0.3)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from podinfra.check.cri import CRIError

T = TypeVar("T")
FIRST_PAUSE, LONGEST_PAUSE = 0.1, 2.0  # backoff between asks: 0.1, 0.2, 0.4 ... at most 2 s
LIMIT_NAME = "check_probe_timeout"
SLOW_REMEDIATION = (
    "Nothing was found wrong: the node (or its registry) was too slow to answer within the check's budget. "
    f"Check again when it is less busy, or give slow nodes more time: host data {LIMIT_NAME} (seconds per check) "
    "and `podinfra check --timeout` (seconds per node)."
)


class Slow(Exception):
    """A condition did not hold within the check's budget: not proved (WARN), not a wrong answer."""

    def __init__(self, what: str, waited: float, limit: float, last: str = ""):
        self.what, self.waited, self.limit, self.last = what, waited, limit, last
        seen = f" (last answer: {last})" if last else ""
        super().__init__(f"{what}: no answer within the limit, waited {waited:.1f}s of {limit:g}s ({LIMIT_NAME}){seen}")


@dataclass
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class FakeClock(Clock):
    """A clock whose sleeps only move its time on (for the unit tests)."""

    t: float = 0.0

    def __post_init__(self) -> None:
        self.now = lambda: self.t
        self.sleep = self._advance

    def _advance(self, seconds: float) -> None:
        self.t = round(self.t + seconds, 6)


@dataclass
class Deadline:
    """`limit` seconds from now on `clock`."""

    limit: float
    clock: Clock = field(default_factory=Clock)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.now()

    def elapsed(self) -> float:
        return round(self.clock.now() - self.started, 6)

    def left(self) -> float:
        return max(0.0, self.limit - self.elapsed())

    def slow(self, what: str, last: str = "") -> Slow:
        return Slow(what, self.elapsed(), self.limit, last)


def wait_for(
    what: str,
    ask: Callable[[float], T],
    pending: Callable[[T], bool],
    deadline: Deadline,
    describe: Callable[[T], str] = str,
    between: Callable[[], None] = lambda: None,
) -> tuple[T, float]:
    """Ask (given the seconds left, for its own timeout) until the answer is no longer `pending`:
    (that answer, seconds waited). Raises :class:`Slow` with the last answer once the deadline passed;
    `between` runs before each pause (a probe's interrupt checkpoint)."""
    pause = FIRST_PAUSE
    while True:
        answer = ask(deadline.left())
        if not pending(answer):
            return answer, deadline.elapsed()
        if deadline.left() <= 0:
            raise deadline.slow(what, describe(answer))
        between()
        deadline.clock.sleep(min(pause, deadline.left()))
        pause = min(pause * 2, LONGEST_PAUSE)


def is_slow(error: BaseException) -> bool:
    """Whether `error` says a node took too long, rather than what it answered: our own deadline, a CRI call's
    (gRPC DEADLINE_EXCEEDED) or an ssh command's."""
    if isinstance(error, CRIError):
        return error.code == "DEADLINE_EXCEEDED"
    return isinstance(error, Slow | subprocess.TimeoutExpired)


# curl's exit codes for a registry that did not answer in time or dropped the connection (28: timed out, 52: empty
# reply, 56: receive failure), and ssh's (255) for a node that did not; and HTTP statuses of a registry too busy
# to answer. Anything else (refused, TLS, 401, 404, a wrong digest) is the registry's answer.
SLOW_CURL = (28, 52, 56, 255)
BUSY_HTTP = (429, 502, 503, 504)


def registry_pending(rc: int, status: int) -> bool:
    """Whether a curl of the registry is worth asking again: it did not answer in time, or was busy.

    >>> registry_pending(28, 0), registry_pending(0, 503), registry_pending(0, 200), registry_pending(7, 0)
    (True, True, False, False)
    """
    return rc in SLOW_CURL or (rc == 0 and status in BUSY_HTTP)


def orphan_verdict(last: str) -> str:
    """At the deadline, what the orphan's last state says: a zombie exited and was not reaped in the whole
    budget (pause does not reap: FAIL); one still running (`S`, `R`) is only slow (WARN).

    >>> orphan_verdict("Z (zombie)"), orphan_verdict("S (sleeping)")
    ('fail', 'warn')
    """
    return "fail" if last.startswith("Z") else "warn"
