"""Probe pods through the CRI, safe on a live node: only our own sandboxes are made or removed.

Every probe sandbox sits in namespace ``podinfra-check`` and carries the label
``app.kubernetes.io/managed-by=podinfra-check`` plus its own uid as ``podinfra.io/probe-uid``.
Leftovers of an interrupted run are found by namespace AND label, so a pod of anyone else is never
touched, and are removed before any new probe starts.

An interrupt (SIGTERM from ``podinfra check``, Ctrl-C) never lands in the middle of a CRI call:
while a probe exists it is held until the call returns (:func:`held_interrupts`), then raised, so
the sandbox the runtime made is always known and removed.

    with held_interrupts(), probe_sandbox(runtime, share_pid=True) as sandbox_id:
        ...  # removed on the way out, whatever happens
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from podinfra.check.catalogue import PROBE_LABELS, PROBE_NAMESPACE
from podinfra.check.cri import GONE, CRIError, Runtime

UID_LABEL = "podinfra.io/probe-uid"
BUSYBOX = "/bin/busybox"  # in the probe image (`podinfra probe-image`): static, so any image layout does
_held: list[int] = []  # signals that arrived while held, in order
KEPT_REMEDIATION = (
    f"Run the check again once the node is less busy: it removes podinfra's own probe sandboxes (namespace "
    f"{PROBE_NAMESPACE}) first. If one stays, read the runtime's log (journalctl -u containerd, or -u crio)."
)


def leftovers(runtime: Runtime) -> list[str]:
    return runtime.sandboxes(namespace=PROBE_NAMESPACE, labels=PROBE_LABELS)


def remove_leftovers(runtime: Runtime, between: Callable[[], None] = lambda: None) -> tuple[list[str], dict[str, str]]:
    """Remove probe sandboxes an earlier, interrupted run left (Ready or not): (ids removed, {id: why not}
    for those the runtime would not remove within its timeout). A runtime that hangs or is gone raises;
    `between` runs before each (an interrupt checkpoint)."""
    removed, kept = [], {}
    for sandbox_id in leftovers(runtime):
        between()
        try:
            runtime.remove_sandbox(sandbox_id)
            removed.append(sandbox_id)
        except CRIError as error:
            if error.code in GONE:
                raise
            kept[sandbox_id] = str(error)
    return removed, kept


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


@contextmanager
def held_interrupts(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[Callable[[], None]]:
    """Hold `signals` inside the block; they are raised as KeyboardInterrupt when it ends, or earlier at
    each ``checkpoint()`` the block calls between CRI calls."""
    previous: dict[int, Any] = {signum: signal.signal(signum, _hold) for signum in signals}

    def checkpoint() -> None:
        if _held:
            raise KeyboardInterrupt

    try:
        yield checkpoint
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        arrived, _held[:] = bool(_held), []
    if arrived:
        raise KeyboardInterrupt


@contextmanager
def probe_sandbox(runtime: Runtime, share_pid: bool = False) -> Iterator[str]:
    """A fresh probe sandbox (unique name and uid), stopped and removed on every way out."""
    uid = str(uuid.uuid4())
    labels = {**PROBE_LABELS, UID_LABEL: uid}
    try:
        sandbox_id = runtime.run_sandbox(
            f"probe-{uid[:8]}", uid, namespace=PROBE_NAMESPACE, share_pid=share_pid, labels=labels
        )
    except BaseException:
        # A failed RunPodSandbox can leave a NotReady sandbox holding the name: remove it too.
        with suppress(CRIError):
            for found in runtime.sandboxes(namespace=PROBE_NAMESPACE, labels={UID_LABEL: uid}):
                runtime.remove_sandbox(found)
        raise
    try:
        yield sandbox_id
    finally:
        runtime.remove_sandbox(sandbox_id)


def sh(runtime: Runtime, container: str, script: str, left: float) -> str:
    """`script`'s output in the container, given what is left of the check's budget (at least 2 s)."""
    result = runtime.exec_sync(container, [BUSYBOX, "sh", "-c", script], timeout=max(2, round(left)))
    if result.exit_code != 0:
        raise AssertionError(f"`{script}` exited {result.exit_code}: {(result.stderr or result.stdout).strip()[:200]}")
    return result.stdout
