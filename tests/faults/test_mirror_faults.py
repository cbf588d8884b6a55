"""Mirror faults against real docker-registry processes on loopback: a registry that dies mid-copy,
and two copies racing into one registry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from podinfra.lab import pause
from podinfra.mirror import RegistrySource, Summary, copy_image
from podinfra.registry import RegistryClient, RegistryError

from ..conftest import free_port


class Registry:
    """A docker-registry that can be stopped and started again on the same port and storage."""

    def __init__(self, top: Path):
        self.port = free_port()
        self.config = top / "registry.yml"
        self.config.write_text(
            f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {top / 'data'}}}}}\n"
            f"http: {{addr: 127.0.0.1:{self.port}}}\n"
        )
        self.client = RegistryClient(f"http://127.0.0.1:{self.port}", timeout=5)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.client.ping():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        assert self.process
        self.process.kill()
        self.process.wait()


@pytest.fixture
def registries(tmp_path_factory):
    started: list[Registry] = []

    def make() -> Registry:
        started.append(Registry(tmp_path_factory.mktemp("reg")).start())
        return started[-1]

    yield make
    for registry in started:
        if registry.process and registry.process.poll() is None:
            registry.stop()


@pytest.fixture
def upstream(registries, tmp_path_factory):
    registry = registries()
    pause.publish(registry.client, tmp_path_factory.mktemp("pause"))
    return registry


class DyingSource(RegistrySource):
    """Reads from upstream, and kills the destination once `after` blobs have been read."""

    def __init__(self, client: RegistryClient, repository: str, victim: Registry, after: int):
        super().__init__(client, repository)
        self.victim, self.after, self.read = victim, after, 0

    def blob(self, digest: str) -> bytes:
        self.read += 1
        if self.read > self.after:
            self.victim.stop()
        return super().blob(digest)


def test_registry_down_mid_mirror_fails_clearly_tags_nothing_and_resumes(upstream, registries):
    dest = registries()
    dying = DyingSource(upstream.client, "pause", dest, after=2)
    with pytest.raises(RegistryError, match=r"registry 127\.0\.0\.1:\d+ is unreachable"):
        copy_image(dying, "3.10", dest.client, "pause", "3.10", Summary())
    dest.start()
    assert dest.client.manifest_digest("pause", "3.10") is None, "nothing is tagged after a failed copy"
    resumed = Summary()
    digest = copy_image(RegistrySource(upstream.client, "pause"), "3.10", dest.client, "pause", "3.10", resumed)
    assert (resumed.blobs_skipped, resumed.blobs_uploaded) == (2, 2), "blobs sent before the failure are not sent again"
    assert digest == upstream.client.get_manifest("pause", "3.10").digest


def test_two_mirrors_at_once_end_with_identical_correct_digests(upstream, registries):
    dest = registries()
    command = [sys.executable, "-m", "podinfra.cli", "mirror", "--source", upstream.client.host, "--source-insecure",
               "--kubernetes-version", "1.31", "--kubernetes-version", "1.34", "--to", dest.client.host, "--insecure",
               "--json"]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: subprocess.run(command, capture_output=True, text=True), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr.strip().splitlines()[-1] for r in results]
    digests = [{i["digest"] for i in json.loads(r.stdout)["images"]} for r in results]
    assert digests[0] == digests[1] == {upstream.client.get_manifest("pause", t).digest for t in ("3.10", "3.10.1")}
    for tag in ("3.10", "3.10.1"):
        assert dest.client.get_manifest("pause", tag) == upstream.client.get_manifest("pause", tag)
