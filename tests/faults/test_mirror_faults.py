"""Mirror faults against real docker-registry processes on loopback: a registry that dies mid-upload
or between blobs, and two copies racing into one registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from podinfra.images.mirror import RegistrySource, Summary, copy_image
from podinfra.images.registry import RegistryClient, RegistryError
from podinfra.images.transfer import Transfers
from podinfra.lab import pause
from podinfra.lab.upstream import LoopbackRegistry

from .bigimage import MIB, push_image


class Registry(LoopbackRegistry):
    """A docker-registry that can be stopped (killed, as a crash would) and started again on the same port and
    storage; its client gives up after 5 s."""

    def __init__(self, top: Path):
        super().__init__(top)
        self.client = RegistryClient(self.url, timeout=5)

    def stop(self, kill: bool = True) -> None:
        super().stop(kill)


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
    """Reads from upstream, and kills the destination once `after` bytes of the blob `victim_blob` went by:
    in the middle of its upload."""

    def __init__(self, client: RegistryClient, repository: str, victim: Registry, victim_blob: str, after: int):
        super().__init__(client, repository)
        self.victim, self.victim_blob, self.after = victim, victim_blob, after

    def blob(self, digest: str) -> Iterator[bytes]:
        sent = 0
        for chunk in super().blob(digest):
            sent += len(chunk)
            if digest == self.victim_blob and sent > self.after and self.victim.process.poll() is None:
                self.victim.stop()
            yield chunk


def test_registry_down_mid_upload_is_one_line_tags_nothing_and_resumes(upstream, registries):
    manifest = push_image(upstream.client, "big", "1", [40 * MIB, 48 * MIB])
    layers = [layer["digest"] for layer in json.loads(manifest.data)["layers"]]
    dest = registries()
    # One blob at a time, largest first: the 48 MiB layer is complete when the registry dies 8 MiB into the next.
    dying = DyingSource(upstream.client, "big", dest, layers[0], after=8 * MIB)
    with pytest.raises(RegistryError) as failure, Transfers(1) as transfers:
        copy_image(dying, "1", dest.client, "big", "1", Summary(), transfers=transfers)
    message = str(failure.value)
    assert re.fullmatch(r"registry 127\.0\.0\.1:\d+ is unreachable: check the address and that it is running", message)
    dest.start()
    assert dest.client.manifest_digest("big", "1") is None, "nothing is tagged after a failed copy"
    assert not dest.client.blob_exists("big", layers[0]), "the interrupted upload was not committed"
    assert dest.client.blob_exists("big", layers[1])
    resumed = Summary()
    digest = copy_image(RegistrySource(upstream.client, "big"), "1", dest.client, "big", "1", resumed)
    assert (resumed.blobs_skipped, resumed.blobs_uploaded) == (1, 2), (
        "the blob sent before the failure is not sent again"
    )
    assert 40 * MIB < resumed.bytes_sent < 41 * MIB  # the 40 MiB layer and the config
    assert digest == manifest.digest


def test_registry_down_between_blobs_fails_clearly_and_resumes(upstream, registries):
    dest = registries()
    first = json.loads(upstream.client.get_manifest("pause", "3.10").data)["manifests"][0]["digest"]
    layer = json.loads(upstream.client.get_manifest("pause", first).data)["layers"][0]["digest"]
    dying = DyingSource(upstream.client, "pause", dest, layer, after=0)
    with pytest.raises(RegistryError, match=r"registry 127\.0\.0\.1:\d+ is unreachable"):
        copy_image(dying, "3.10", dest.client, "pause", "3.10", Summary())
    dest.start()
    assert dest.client.manifest_digest("pause", "3.10") is None
    resumed = Summary()
    digest = copy_image(RegistrySource(upstream.client, "pause"), "3.10", dest.client, "pause", "3.10", resumed)
    assert resumed.blobs_uploaded >= 1 and resumed.blobs_skipped + resumed.blobs_uploaded == 4
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
