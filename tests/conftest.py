"""Shared fixtures: a real CNCF distribution registry on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podinfra.images.registry import RegistryClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RegistryClient]]:
    """Start fresh docker-registry processes (Debian's CNCF distribution) on 127.0.0.1, plain HTTP.

    Each client's ``storage`` attribute is its data directory, for tests that tamper with it.
    """
    processes = []

    def start() -> RegistryClient:
        top = tmp_path_factory.mktemp("registry")
        port = free_port()
        config = top / "registry.yml"
        config.write_text(
            f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {top / 'data'}}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}}}\n"
        )
        processes.append(
            subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        client = RegistryClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 10
        while not client.ping():
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.05)
        client.storage = top / "data"  # type: ignore[attr-defined]
        return client

    yield start
    for process in processes:
        process.terminate()
        process.wait()


@pytest.fixture
def registry(start_registry: Callable[[], RegistryClient]) -> RegistryClient:
    return start_registry()


@pytest.fixture(scope="session")
def pause_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the lab's pause binaries are compiled, once a session."""
    return tmp_path_factory.mktemp("pause")


@pytest.fixture
def upstream(start_registry: Callable[[], RegistryClient], pause_build: Path) -> RegistryClient:
    """A registry holding the lab's pause images, as the lab's upstream does."""
    from podinfra.lab import pause

    client = start_registry()
    pause.publish(client, pause_build)
    return client
