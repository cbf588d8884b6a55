"""Shared fixtures: a real CNCF distribution registry on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podinfra.registry import RegistryClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryClient]:
    """A fresh docker-registry (Debian's CNCF distribution) on 127.0.0.1, plain HTTP."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = RegistryClient(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while not client.ping():
        assert time.monotonic() < deadline, "docker-registry did not start"
        time.sleep(0.05)
    yield client
    process.terminate()
    process.wait()
