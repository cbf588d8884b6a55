"""docker-registry (CNCF distribution) on the host's loopback, plain HTTP: the lab's "upstream" registry, out of
the nodes' reach, and the throwaway registries of the tests and benchmarks. One launcher for all of them."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from podinfra.images.registry import RegistryClient
from podinfra.lab.state import LabError, LabState

CONFIG = """\
version: 0.1
log:
  level: {level}
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackRegistry:
    """A docker-registry whose config and data live under `top`, serving `addr` (default: a free port on
    127.0.0.1). It can be stopped and started again on the same port and data. `extra`: more of its YAML
    config (e.g. an `auth:` section); `ready`: how to tell it answers (default: `GET /v2/` is 200).

    ``with LoopbackRegistry(tmp) as registry: RegistryClient(registry.url)``
    """

    def __init__(self, top: Path, addr: str | None = None, *, extra: str = "", level: str = "error") -> None:
        self.top, self.addr = top, addr or f"127.0.0.1:{free_port()}"
        self.data = top / "data"
        self.config = top / "config.yml"
        self.config.write_text(CONFIG.format(level=level, data=self.data, addr=self.addr) + extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(
        self,
        *,
        log: Path | None = None,
        detach: bool = False,
        timeout: float = 10,
        ready: Callable[[], bool] | None = None,
    ) -> LoopbackRegistry:
        """Start it and wait until it answers, at most `timeout` s. `log`: where its output goes (default: nowhere);
        `detach`: in a session of its own, so that it outlives this process (the lab's)."""
        self.data.mkdir(parents=True, exist_ok=True)
        output = log.open("ab") if log else None
        try:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=output or subprocess.DEVNULL,
                stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
                start_new_session=detach,
            )
        finally:
            if output:
                output.close()
        answers = ready or RegistryClient(self.url).ping
        deadline = time.monotonic() + timeout
        while not answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                where = f"; see {log}" if log else ""
                raise LabError(f"docker-registry did not start on {self.addr} within {timeout:g} s{where}")
            time.sleep(0.05)
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop it (`kill`: at once, as a crash would) and wait for it to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
        self.process.wait()

    def __enter__(self) -> LoopbackRegistry:
        return self if self.process else self.start()

    def __exit__(self, *failure: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def directory(state: LabState) -> Path:
    return state.config.root / "upstream"


def start(state: LabState) -> int:
    """Start the lab's upstream registry, detached (it lives as long as the lab); its pid."""
    top = directory(state)
    top.mkdir(parents=True, exist_ok=True)
    registry = LoopbackRegistry(top, state.upstream, level="warn")
    registry.start(log=top / "registry.log", detach=True, timeout=15)
    assert registry.process is not None
    return registry.process.pid
