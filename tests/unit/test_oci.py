import gzip
import io
import json
import tarfile

import pytest

from podinfra.images import oci

PLATFORM = {"architecture": "arm64", "os": "linux", "variant": "v8"}


@pytest.mark.parametrize("flavour", ["oci", "docker"])
def test_images_are_reproducible_and_typed_by_flavour(flavour):
    build = lambda: oci.build_image({"pause": b"\x7fELF"}, PLATFORM, {"User": "65535:65535"}, flavour)  # noqa: E731
    first, second = build(), build()
    assert first == second
    index_type, manifest_type, config_type, layer_type = oci.FLAVOURS[flavour]
    manifest = json.loads(first.manifest.data)
    assert manifest["mediaType"] == first.manifest.media_type == manifest_type
    assert manifest["config"] == {
        "mediaType": config_type,
        "digest": first.config.digest,
        "size": len(first.config.data),
    }
    assert [layer["mediaType"] for layer in manifest["layers"]] == [layer_type]
    index = json.loads(oci.build_index([first], flavour).data)
    assert index["mediaType"] == index_type
    assert index["manifests"][0]["platform"] == PLATFORM


def test_layer_holds_one_executable_and_its_diff_id_matches():
    layer, diff_id = oci.single_file_layer("pause", b"binary", oci.OCI_LAYER)
    raw = gzip.decompress(layer.data)
    assert oci.digest_of(raw) == diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.mtime, member.uid) == ("pause", 0o755, 0, 0)


def test_config_records_diff_ids_and_platform():
    image = oci.build_image({"pause": b"x"}, PLATFORM, {"Entrypoint": ["/pause"]}, "oci")
    config = json.loads(image.config.data)
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    assert config["config"] == {"Entrypoint": ["/pause"]}
    assert config["rootfs"]["diff_ids"] == [oci.single_file_layer("pause", b"x", oci.OCI_LAYER)[1]]
