"""podinfra mirror / export / import against real registries on loopback (Debian's docker-registry),
with the lab's own pause images as the upstream."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from podinfra import cli
from podinfra.images.oci import digest_of


def run(capsys, *argv: str) -> tuple[int, dict | str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    if "--json" in argv and code == 0:
        return code, json.loads(captured.out)
    return code, captured.out + captured.err


def tree(client, repo: str, tag: str) -> dict[str, bytes]:
    """The index and each platform manifest, as raw bytes by digest."""
    top = client.get_manifest(repo, tag)
    found = {top.digest: top.data}
    for child in json.loads(top.data)["manifests"]:
        found[child["digest"]] = client.get_manifest(repo, child["digest"]).data
    return found


def export_args(upstream, bundle: Path, *versions: str) -> list[str]:
    minors = [arg for version in versions for arg in ("--kubernetes-version", version)]
    return ["export", "--source", upstream.host, "--source-insecure", *minors, "-o", str(bundle)]


def mirror_args(upstream, dest, *extra: str) -> list[str]:
    return ["mirror", "--source", upstream.host, "--source-insecure", "--to", dest.host, "--insecure", "--json", *extra]


def test_mirror_keeps_every_digest_and_a_rerun_uploads_nothing(capsys, upstream, start_registry):
    dest = start_registry()
    versions = ("--kubernetes-version", "1.30", "--kubernetes-version", "1.31", "--kubernetes-version", "1.34")
    code, first = run(capsys, *mirror_args(upstream, dest, *versions))
    assert code == 0
    assert first["blobs_uploaded"] == 12 and first["bytes_sent"] > 0  # 3 tags x 2 platforms x (config + layer)
    assert sorted(first["platforms"]) == ["linux/amd64", "linux/arm64/v8"]
    for tag in ("3.9", "3.10", "3.10.1"):
        assert tree(dest, "pause", tag) == tree(upstream, "pause", tag)
        assert dest.get_manifest("pause", tag).media_type == upstream.get_manifest("pause", tag).media_type
    pinned = {i["destination"] for i in first["images"]}
    assert f"{dest.host}/pause:3.10@{upstream.get_manifest('pause', '3.10').digest}" in pinned
    code, second = run(capsys, *mirror_args(upstream, dest, *versions))
    # complete there already: only the three tags were asked, no blob or platform manifest
    assert (code, second["bytes_sent"], second["images_present"], second["changed"]) == (0, 0, 3, False)
    assert second["blobs_skipped"] == 0 and second["images"] == first["images"]


def test_prefix_and_cross_repository_mount(capsys, upstream, start_registry):
    dest = start_registry()
    assert run(capsys, *mirror_args(upstream, dest, "--kubernetes-version", "1.31"))[0] == 0
    prefixed = mirror_args(upstream, dest, "--kubernetes-version", "1.31")
    prefixed[prefixed.index(dest.host)] = f"{dest.host}/mirror"
    code, out = run(capsys, *prefixed)
    assert code == 0
    assert (out["blobs_mounted"], out["blobs_uploaded"], out["bytes_sent"]) == (4, 0, 0)
    assert tree(dest, "mirror/pause", "3.10") == tree(upstream, "pause", "3.10")


def test_platform_limits_the_copy_to_one_architecture(capsys, upstream, start_registry):
    dest = start_registry()
    code, out = run(capsys, *mirror_args(upstream, dest, "--kubernetes-version", "1.31", "--platform", "linux/arm64"))
    assert code == 0 and out["platforms"] == ["linux/arm64/v8"]
    index = json.loads(dest.get_manifest("pause", "3.10").data)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]


def test_a_source_serving_wrong_bytes_is_refused_and_nothing_is_tagged(capsys, upstream, start_registry):
    config_digest = json.loads(
        upstream.get_manifest(
            "pause", json.loads(upstream.get_manifest("pause", "3.10").data)["manifests"][0]["digest"]
        ).data
    )["config"]["digest"]
    hexdigest = config_digest.removeprefix("sha256:")
    data = next(Path(upstream.storage).rglob(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"))
    data.write_bytes(data.read_bytes().replace(b"65535", b"00000"))
    dest = start_registry()
    args = [a for a in mirror_args(upstream, dest, "--kubernetes-version", "1.31") if a != "--json"]
    code, out = run(capsys, *args)
    assert code == 2
    assert f"blob {config_digest}" in out and "refusing it, nothing tagged" in out
    assert out.strip().splitlines()[-1].startswith(f"podinfra: blob {config_digest}")
    assert dest.manifest_digest("pause", "3.10") is None


def test_export_then_import_gives_identical_digests(capsys, upstream, start_registry, tmp_path):
    bundle = tmp_path / "bundle.tar"
    code, out = run(capsys, *export_args(upstream, bundle, "1.31", "1.26"))
    assert code == 0, out
    fresh = start_registry()
    code, summary = run(capsys, "import", str(bundle), "--to", fresh.host, "--insecure", "--json")
    assert code == 0
    assert [i["source"].split(":", 1)[1] for i in summary["images"]] == [
        upstream.get_manifest("pause", "3.10").digest,
        upstream.get_manifest("pause", "3.9").digest,
    ]
    for tag in ("3.10", "3.9"):
        assert tree(fresh, "pause", tag) == tree(upstream, "pause", tag)


def _tamper(bundle: Path, out: Path) -> None:
    """Copy the archive with one bit flipped in the first large blob."""
    flipped = False
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.startswith("blobs/") and not flipped and len(data) > 10000:
                data, flipped = data[:-1] + bytes([data[-1] ^ 1]), True
            dst.addfile(member, io.BytesIO(data))


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_damaged_archive_is_refused_and_nothing_is_tagged(capsys, upstream, start_registry, tmp_path, damage):
    bundle = tmp_path / "bundle.tar"
    assert run(capsys, *export_args(upstream, bundle, "1.31"))[0] == 0
    bad = tmp_path / "bad.tar"
    if damage == "tampered":
        _tamper(bundle, bad)
    else:
        bad.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    fresh = start_registry()
    code, out = run(capsys, "import", str(bad), "--to", fresh.host, "--insecure")
    assert code == 2
    assert ("expected sha256:" in out) if damage == "tampered" else ("truncated or damaged" in out)
    assert fresh.manifest_digest("pause", "3.10") is None


def test_unknown_tag_and_unreachable_registry_are_one_line_errors(capsys, upstream, registry):
    code, out = run(
        capsys,
        "mirror",
        "--source",
        upstream.host,
        "--source-insecure",
        "--image",
        "registry.k8s.io/pause:9.9",
        "--to",
        registry.host,
        "--insecure",
    )
    assert (
        code == 2
        and out.strip().splitlines()[-1]
        == f"podinfra: get manifest pause:9.9: HTTP 404 (MANIFEST_UNKNOWN) from {upstream.host}"
    )
    code, out = run(
        capsys,
        "mirror",
        "--source",
        "127.0.0.1:9",
        "--source-insecure",
        "--kubernetes-version",
        "1.31",
        "--to",
        "127.0.0.1:9",
        "--insecure",
    )
    assert (
        code == 2
        and out.strip().splitlines()[-1]
        == "podinfra: registry 127.0.0.1:9 is unreachable: check the address and that it is running"
    )


def test_digest_helper_matches_registry():
    assert digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
