"""What `podinfra mirror`, `export` and `import` say when something is wrong: one line ``podinfra: ...``,
exit 2, naming the flag of the command that was run; no traceback, no leftovers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from podinfra import cli
from podinfra.images.mirror import RegistrySource


def fails(capsys, *argv: str) -> str:
    """Run the command; it must fail with exit 2 and exactly one line on stderr, returned."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("podinfra: "), err
    assert "Traceback" not in err and "Error(" not in err
    return err.strip()


def test_tls_hints_name_the_flags_of_the_side_and_command_that_was_run(capsys, upstream, tmp_path):
    # The source speaks plain HTTP: export has no --ca-file; the source side's flag is --source-insecure.
    line = fails(capsys, "export", "--source", upstream.host, "--kubernetes-version", "1.31", "-o", str(tmp_path / "b"))
    assert line.endswith("it may speak plain HTTP; then pass --source-insecure"), line
    assert "--ca-file" not in line
    line = fails(
        capsys, "mirror", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
        "--to", upstream.host,
    )  # fmt: skip
    assert line.endswith("it may speak plain HTTP; then pass --insecure") and "--source" not in line, line


def test_import_of_a_missing_file_says_so(capsys, registry, tmp_path):
    missing = tmp_path / "nothere.tar"
    assert fails(capsys, "import", str(missing), "--to", registry.host, "--insecure") == (
        f"podinfra: archive {missing}: no such file"
    )
    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("not an archive\n" * 100)
    line = fails(capsys, "import", str(not_a_tar), "--to", registry.host, "--insecure")
    assert "truncated or damaged" in line and "nothing was pushed" in line


def test_files_that_are_not_there_are_one_line(capsys, upstream, registry, tmp_path):
    line = fails(
        capsys, "mirror", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
        "--to", registry.host, "--insecure", "--username", "push", "--password-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert line == f"podinfra: password file {tmp_path / 'pw'}: No such file or directory"
    out = tmp_path / "no" / "bundle.tar"
    line = fails(capsys, "export", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
                 "-o", str(out))  # fmt: skip
    assert line == f"podinfra: cannot write {out}: No such file or directory"


def test_platform_that_no_image_has_names_it_plainly(capsys, upstream, registry):
    line = fails(
        capsys, "mirror", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
        "--to", registry.host, "--insecure", "--platform", "linux/s390x",
    )  # fmt: skip
    assert line.endswith("has none of the platforms linux/s390x"), line


def _corrupt_config(upstream) -> str:
    """Flip the bytes of pause:3.10's first config blob on the registry's disk; returns its digest."""
    child = json.loads(upstream.get_manifest("pause", "3.10").data)["manifests"][0]["digest"]
    digest = json.loads(upstream.get_manifest("pause", child).data)["config"]["digest"]
    hexdigest = digest.removeprefix("sha256:")
    data = next(Path(upstream.storage).rglob(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"))
    data.write_bytes(data.read_bytes().replace(b"65535", b"00000"))
    return digest


def test_a_failed_export_leaves_no_partial_file(capsys, upstream, tmp_path):
    digest = _corrupt_config(upstream)
    bundle = tmp_path / "bundle.tar"
    line = fails(capsys, "export", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
                 "-o", str(bundle))  # fmt: skip
    assert f"blob {digest}" in line and "refusing it" in line
    assert list(tmp_path.iterdir()) == [], "neither bundle.tar nor bundle.tar.partial is left"


def test_ctrl_c_during_an_export_is_one_line_and_leaves_no_partial_file(capsys, upstream, tmp_path, monkeypatch):
    def interrupted(self, digest):
        yield b"x"
        raise KeyboardInterrupt

    monkeypatch.setattr(RegistrySource, "blob", interrupted)
    line = fails(capsys, "export", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
                 "-o", str(tmp_path / "bundle.tar"))  # fmt: skip
    assert line.startswith("podinfra: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_mirror_is_one_line_and_tags_nothing(capsys, upstream, registry, monkeypatch):
    original = RegistrySource.blob

    def interrupted(self, digest):
        yield from original(self, digest)
        raise KeyboardInterrupt

    monkeypatch.setattr(RegistrySource, "blob", interrupted)
    line = fails(
        capsys, "mirror", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
        "--to", registry.host, "--insecure",
    )  # fmt: skip
    assert line.startswith("podinfra: interrupted")
    assert registry.manifest_digest("pause", "3.10") is None


def test_the_summary_counts_in_words(capsys, upstream, registry):
    argv = ["mirror", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
            "--to", registry.host, "--insecure"]  # fmt: skip
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "\n1 image, 2 platforms, " in first and " 4 blobs uploaded, " in first
    assert "0 images complete there already" in first
    assert cli.main(argv) == 0
    again = capsys.readouterr().out
    assert "1 image, 2 platforms, 0 bytes sent, 0 blobs uploaded" in again
    assert "1 image complete there already" in again and "images complete" not in again


def test_an_archive_whose_images_have_no_name_is_one_line(capsys, upstream, registry, tmp_path):
    bundle, unnamed = tmp_path / "bundle.tar", tmp_path / "unnamed.tar"
    assert cli.main(["export", "--source", upstream.host, "--source-insecure", "--kubernetes-version", "1.31",
                     "-o", str(bundle)]) == 0  # fmt: skip
    capsys.readouterr()
    with tarfile.open(bundle) as src, tarfile.open(unnamed, "w") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name == "index.json":  # as skopeo writes it: a ref name, no image name
                index = json.loads(data)
                index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "3.10"}
                data = json.dumps(index).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    line = fails(capsys, "import", str(unnamed), "--to", registry.host, "--insecure")
    assert "has no io.containerd.image.name annotation" in line
