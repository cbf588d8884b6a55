"""The lab's pause images: built from pause.c for two platforms, shaped like upstream's."""

import json
import os
import platform
import signal
import subprocess
import time

import pytest

from podinfra.lab import pause


def test_every_tag_is_a_two_platform_index_with_pause_as_user_65535(tmp_path):
    digests = set()
    for tag in ("3.9", "3.10", "3.10.1"):
        index, images = pause.build_tag(tag, tmp_path)
        digests.add(index.digest)
        manifests = json.loads(index.data)["manifests"]
        assert {m["platform"]["architecture"] for m in manifests} == {"amd64", "arm64"}
        for image in images:
            config = json.loads(image.config.data)["config"]
            assert config["User"] == "65535:65535"
            assert config["Entrypoint"] == ["/pause"]
    assert len(digests) == 3, "each tag is a distinct image"
    assert pause.build_tag("3.10", tmp_path)[0] == pause.build_tag("3.10", tmp_path)[0]


def test_binaries_are_static_for_their_platform(tmp_path):
    for arch, machine in (("amd64", "x86-64"), ("arm64", "aarch64")):
        binary = tmp_path / f"pause-3.10-{arch}"
        pause.compile_pause("3.10", arch, tmp_path)
        described = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True).stdout
        assert machine in described.replace("ARM ", "") and "statically linked" in described


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the amd64 pause binary: an x86_64 host only")
def test_pause_reaps_orphans_and_exits_on_sigterm(tmp_path):
    binary = tmp_path / "pause-3.10-amd64"
    pause.compile_pause("3.10", "amd64", tmp_path)
    assert subprocess.run([str(binary), "-v"], capture_output=True, text=True).stdout.startswith("pause.c 3.10")
    # unshare makes pause PID 1 of a new PID namespace; a shell then leaves an orphan behind.
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", str(binary)])
    time.sleep(0.3)
    (ns_pause,) = [
        int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    ]
    subprocess.run(["nsenter", "-t", str(ns_pause), "-p", "-m", "sh", "-c", "sleep 0.2 & exit 0"], check=True)
    time.sleep(0.6)
    zombies = subprocess.run(["ps", "-eo", "stat,ppid"], capture_output=True, text=True).stdout.split("\n")
    assert not [z for z in zombies if z.startswith("Z") and z.split()[1] == str(ns_pause)]
    os.kill(ns_pause, signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
