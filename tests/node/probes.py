"""Probe pods through the CRI, safe on a live node: only our own sandboxes are made or removed.

Every probe sandbox sits in namespace ``podinfra-check`` and carries the label
``app.kubernetes.io/managed-by=podinfra-check`` plus its own uid as ``podinfra.io/probe-uid``.
Leftovers of an interrupted run are found by namespace AND label, so a pod of anyone else is never
touched, and are removed before any new probe starts.

    with probe_sandbox(runtime, share_pid=True) as sandbox_id:
        ...  # removed on the way out, whatever happens
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import grpc

from podinfra.checks import PROBE_LABELS, PROBE_NAMESPACE
from podinfra.cri import Runtime

UID_LABEL = "podinfra.io/probe-uid"


def leftovers(runtime: Runtime) -> list[str]:
    return runtime.sandboxes(namespace=PROBE_NAMESPACE, labels=PROBE_LABELS)


def remove_leftovers(runtime: Runtime) -> list[str]:
    """Remove probe sandboxes an earlier, interrupted run left (Ready or not); returns their ids."""
    found = leftovers(runtime)
    for sandbox_id in found:
        runtime.remove_sandbox(sandbox_id)
    return found


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
        with suppress(grpc.RpcError):
            for found in runtime.sandboxes(namespace=PROBE_NAMESPACE, labels={UID_LABEL: uid}):
                runtime.remove_sandbox(found)
        raise
    try:
        yield sandbox_id
    finally:
        runtime.remove_sandbox(sandbox_id)
