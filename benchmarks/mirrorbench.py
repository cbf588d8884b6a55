"""Copying images into a local registry: the pause set, `podinfra mirror` against `skopeo sync --all` (the
large set is in largeset.py).

Both read the lab's upstream (plain HTTP on the host's loopback) and write to a fresh loopback
docker-registry (plain HTTP) per cold run; the re-copy goes to the same registry right after.
Bytes are counted on the wire by a counting TCP proxy in front of the destination registry, so
both tools are measured the same way (request bytes sent to it: headers and bodies).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labtools import PODINFRA, progress, run

from podinfra import versions
from podinfra.images.registry import RegistryClient
from podinfra.lab.upstream import LoopbackRegistry

MINORS = ("1.30", "1.31", "1.34")
TOOLS = ("podinfra", "skopeo")


def tags() -> list[str]:
    return list(dict.fromkeys(versions.pause_tag(minor) for minor in MINORS))


@contextlib.contextmanager
def fresh_registry(storage: str | None = None) -> Iterator[str]:
    """A new, empty docker-registry on 127.0.0.1 (plain HTTP), as the tests start them, its data in a
    directory under `storage` (default: the temporary directory); yields HOST:PORT."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-registry-", dir=storage) as top,
        LoopbackRegistry(Path(top)) as registry,
    ):
        yield registry.addr


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts the bytes clients send through it and the HTTP requests."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for args in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while data := source.recv(1024**2):
                if count:
                    window = tail + data
                    with self._lock:
                        self.sent += len(data)
                        self.requests += window.count(b" HTTP/1.1\r\n") - tail.count(b" HTTP/1.1\r\n")
                    tail = window[-16:]
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        with self._lock:
            self.sent = self.requests = 0

    def close(self) -> None:
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@dataclass
class Copy:
    seconds: float
    sent: int | None = None  # bytes the tool sent to the destination registry (through the proxy)
    requests: int | None = None
    reported: int | None = None  # podinfra's own bytes_sent (blob bytes uploaded)


def copy(tool: str, upstream: str, dest: str, workdir: Path) -> Copy:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    if tool == "podinfra":
        minors = [arg for minor in MINORS for arg in ("--kubernetes-version", minor)]
        cmd = [PODINFRA, "mirror", *minors, "--source", upstream, "--source-insecure"]
        cmd += ["--to", dest, "--insecure", "--json"]
    else:
        spec = workdir / "skopeo-sync.yml"
        spec.write_text(f"{upstream}:\n  tls-verify: false\n  images:\n    pause: {tags()}\n")
        cmd = ["skopeo", "sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"]
        cmd += ["--retry-times", "0", str(spec), dest]
    start = time.perf_counter()
    result = run(cmd, env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{tool} copy failed:\n{(result.stdout + result.stderr)[-3000:]}")
    reported = None
    if tool == "podinfra":
        reported = int(json.loads(result.stdout)["bytes_sent"])
    return Copy(seconds, reported=reported)


def verify(upstream: str, dest: str) -> None:
    """The destination holds every tag with upstream's digest (byte-exact index)."""
    source, target = RegistryClient(f"http://{upstream}"), RegistryClient(f"http://{dest}")
    for tag in tags():
        want, got = source.manifest_digest("pause", tag), target.manifest_digest("pause", tag)
        if want != got:
            raise RuntimeError(f"pause:{tag}: destination holds {got}, upstream {want}")


def timed_pair(tool: str, upstream: str, workdir: Path) -> tuple[Copy, Copy]:
    """Cold copy into a fresh registry, then the re-copy into it."""
    with fresh_registry() as dest:
        cold = copy(tool, upstream, dest, workdir)
        verify(upstream, dest)
        again = copy(tool, upstream, dest, workdir)
    return cold, again


IN_PROCESS = """
import contextlib, io, sys, time
from podinfra import cli  # imported before the clock starts: what a long-lived caller has loaded
from podinfra.images import cli as images_cli
for _ in range(2):  # cold copy, then the re-copy
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(sys.argv[1:])
    print(time.perf_counter() - start if code == 0 else "failed")
"""


def in_process_pair(upstream: str) -> tuple[float, float]:
    """`podinfra mirror`'s own work, without the interpreter's start and imports: the same command run twice
    through podinfra.cli.main in a process that imported podinfra first (as deploys/mirror.py runs the copy
    inside pyinfra's process)."""
    minors = [arg for minor in MINORS for arg in ("--kubernetes-version", minor)]
    with fresh_registry() as dest:
        times = _mirror_twice_in_process(upstream, dest, minors)
        verify(upstream, dest)
    return times


def _mirror_twice_in_process(upstream: str, dest: str, what: list[str]) -> tuple[float, float]:
    args = ["mirror", *what, "--source", upstream, "--source-insecure", "--to", dest, "--insecure", "--json"]
    result = run([sys.executable, "-c", IN_PROCESS, *args])
    times = result.stdout.split()
    if result.returncode != 0 or len(times) != 2 or "failed" in times:
        raise RuntimeError(f"in-process podinfra mirror failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return float(times[0]), float(times[1])


def counted_pair(tool: str, upstream: str, workdir: Path) -> tuple[Copy, Copy]:
    """The same through the counting proxy: bytes and requests sent to the destination (not timed)."""
    with fresh_registry() as dest:
        proxy = CountingProxy(dest)
        try:
            results = []
            for _ in range(2):
                proxy.reset()
                result = copy(tool, upstream, proxy.address, workdir)
                time.sleep(0.2)  # let the pumps see the tool's connections close
                result.sent, result.requests = proxy.sent, proxy.requests
                results.append(result)
            verify(upstream, dest)
        finally:
            proxy.close()
    progress(f"  {tool}: bytes sent cold {results[0].sent}, re-copy {results[1].sent}")
    return results[0], results[1]
