"""The lab's "upstream" registry: CNCF distribution on the host's loopback, out of the nodes' reach."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from podinfra.images.registry import RegistryClient
from podinfra.lab.state import LabError, LabState

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def directory(state: LabState) -> Path:
    return state.config.root / "upstream"


def start(state: LabState) -> int:
    top = directory(state)
    (top / "data").mkdir(parents=True, exist_ok=True)
    config = top / "config.yml"
    config.write_text(CONFIG.format(data=top / "data", addr=state.upstream))
    log = (top / "registry.log").open("ab")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = RegistryClient(f"http://{state.upstream}")
    deadline = time.monotonic() + 15
    while not client.ping():
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"upstream registry did not start on {state.upstream}; see {top / 'registry.log'}")
        time.sleep(0.1)
    return process.pid
