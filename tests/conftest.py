"""Shared fixtures: a real CNCF distribution registry on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podinfra.images.registry import RegistryClient
from podinfra.lab.upstream import LoopbackRegistry


@pytest.fixture
def start_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RegistryClient]]:
    """Start fresh docker-registry processes (Debian's CNCF distribution) on 127.0.0.1, plain HTTP.

    Each client's ``storage`` attribute is its data directory, for tests that tamper with it.
    """
    started: list[LoopbackRegistry] = []

    def start() -> RegistryClient:
        started.append(LoopbackRegistry(tmp_path_factory.mktemp("registry")).start())
        client = RegistryClient(started[-1].url)
        client.storage = started[-1].data  # type: ignore[attr-defined]
        return client

    yield start
    for registry in started:
        registry.stop()


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
