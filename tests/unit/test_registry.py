"""The registry client against a real docker-registry on loopback."""

import pytest

from podinfra.images import oci
from podinfra.images.registry import RegistryClient, RegistryError, tag_digest


def test_push_skips_blobs_already_present(registry):
    data = b"layer bytes"
    assert registry.push_blob("lib/pause", data) == len(data)
    assert registry.push_blob("lib/pause", data) == 0
    assert registry.get_blob("lib/pause", oci.digest_of(data)) == data


@pytest.mark.parametrize("flavour", ["oci", "docker"])
def test_manifests_come_back_byte_for_byte(registry, flavour):
    image = oci.build_image({"pause": b"x"}, {"architecture": "amd64", "os": "linux"}, {}, flavour)
    for blob in image.blobs:
        registry.push_blob("pause", blob.data)
    registry.push_manifest("pause", image.manifest.digest, image.manifest)
    index = oci.build_index([image], flavour)
    registry.push_manifest("pause", "3.10", index)
    assert registry.get_manifest("pause", "3.10") == index
    assert registry.get_manifest("pause", image.manifest.digest) == image.manifest


def test_unknown_tag_and_unreachable_registry_are_one_line_errors(registry):
    with pytest.raises(RegistryError, match=r"get manifest pause:nope: HTTP 404"):
        registry.get_manifest("pause", "nope")
    with pytest.raises(RegistryError, match="unreachable"):
        RegistryClient("http://127.0.0.1:9", timeout=2).get_manifest("pause", "3.10")


def test_tag_digest_asks_each_registry_once_even_when_it_fails(monkeypatch: pytest.MonkeyPatch):
    """podinfra check asks for the pause digest per node: an unreachable registry costs one timeout, not one each."""
    asked = []

    def unreachable(self, repo, reference):
        asked.append((self.host, repo, reference))
        raise RegistryError(f"registry {self.host} is unreachable")

    monkeypatch.setattr(RegistryClient, "manifest_digest", unreachable)
    for _ in range(3):
        with pytest.raises(RegistryError, match="unreachable"):
            tag_digest("https://10.0.0.9:5000", "pause", "3.10", None, None, None)
    assert asked == [("10.0.0.9:5000", "pause", "3.10")]


def test_a_blob_larger_than_a_chunk_goes_up_in_several_patches_and_comes_back_whole(registry, monkeypatch):
    data = bytes(range(256)) * 4096  # 1 MiB
    registry.chunk_size = 100_000
    sent = []
    send = RegistryClient._send
    monkeypatch.setattr(
        RegistryClient,
        "_send",
        lambda self, method, url, headers, **kw: sent.append(method) or send(self, method, url, headers, **kw),
    )
    assert registry.push_blob("big", data) == len(data)
    assert sent.count("PATCH") == 10 and sent[-1] == "PUT"  # 10 chunks, and the last 48,576 bytes with the PUT
    assert b"".join(registry.blob_chunks("big", oci.digest_of(data))) == data
    assert registry.get_blob("big", oci.digest_of(data)) == data
