"""The CRI-O lab, for real: a containerd 2.1 node and a CRI-O 1.36 node (`--runtimes 2.1,cri-o`)."""

from __future__ import annotations

import json
import runpy
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2 as cri

from podinfra.check.cri import CRIO_SOCKET, Runtime, forwarded_socket
from podinfra.lab import crio

from .conftest import CRIO_LAB, CRIO_RUNTIMES, podinfra, reset_nodes, ssh

pytestmark = pytest.mark.lab
# The upstream pause, carried to the node's localhost:5000 (plain HTTP) by an SSH reverse forward.
PROBE_IMAGE = "localhost:5000/pause:3.10"
PROBE_SETTINGS = (
    f"printf '[crio.image]\\npause_image = \"{PROBE_IMAGE}\"\\n' > /etc/crio/crio.conf.d/50-probe.conf"
    " && mkdir -p /etc/containers/registries.conf.d"
    " && printf '[[registry]]\\nlocation = \"localhost:5000\"\\ninsecure = true\\n'"
    " > /etc/containers/registries.conf.d/50-probe.conf && systemctl restart crio"
)


def pause_runs(config: Path, pid: int, timeout: float = 15) -> bool:
    """CRI-O may answer RunPodSandbox while runc's init still waits to exec the infra container's /pause."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ssh(config, "node2", f"cat /proc/{pid}/comm").stdout.strip() == "pause":
            return True
        time.sleep(0.2)
    return False


def forward_answers(config: Path, forward: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Until the node's localhost:5000 reaches the lab's upstream through `forward` (ssh -R)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert forward.poll() is None, f"ssh -R exited with {forward.returncode}"
        if ssh(config, "node2", "curl -sf -o /dev/null http://localhost:5000/v2/", check=False).returncode == 0:
            return
        time.sleep(0.2)
    pytest.fail(f"the ssh -R forward to the upstream did not answer within {timeout} s")


@pytest.fixture(scope="module")
def config(crio_lab) -> Path:
    reset_nodes(CRIO_LAB)  # the lab as it came up, whatever a module before (test_crio's deploys) left on it
    return Path(crio_lab["ssh"]["config"])


def test_status_names_each_nodes_runtime_and_version(crio_lab, monkeypatch):
    monkeypatch.setenv("PODINFRA_LAB", CRIO_LAB)
    nodes = {n["name"]: n for n in json.loads(podinfra("lab", "status", "--name", CRIO_LAB, "--json").stdout)["nodes"]}
    assert (nodes["registry"]["runtime"], nodes["registry"]["containerd"]) == ("containerd", "1.6")
    assert (nodes["node1"]["runtime"], nodes["node1"]["containerd"]) == ("containerd", "2.1")
    assert nodes["node1"]["version"].startswith("2.1.")
    assert (nodes["node2"]["runtime"], nodes["node2"]["version"], nodes["node2"]["containerd"]) == (
        "cri-o",
        "1.36.3",
        None,
    )
    inventory = runpy.run_path(crio_lab["inventory"])  # reads PODINFRA_LAB
    assert {name: (data["lab_runtime"], data["lab_runtime_version"]) for name, data in inventory["nodes"]} == {
        "node1": ("containerd", nodes["node1"]["version"]),
        "node2": ("cri-o", "1.36.3"),
    }
    table = podinfra("lab", "status", "--name", CRIO_LAB).stdout
    assert "cri-o 1.36.3" in table and "containerd 2.1." in table
    print(f"crio lab up of {len(CRIO_RUNTIMES)} nodes took {crio_lab['up_seconds']}s")


def test_the_crio_node_runs_crio_alone_with_the_labs_settings(config):
    assert ssh(config, "node2", "systemctl is-active crio").stdout.strip() == "active"
    containerd = ssh(config, "node2", "systemctl is-active containerd; systemctl is-enabled containerd", check=False)
    assert containerd.stdout.split() == ["inactive", "masked"]
    assert ssh(config, "node2", "crio --version").stdout.splitlines()[0] == "crio version 1.36.3"
    assert ssh(config, "node2", "ls /etc/crio/crio.conf.d").stdout.split() == ["00-podinfra-lab.conf"]
    effective = ssh(config, "node2", "crio status config").stdout
    assert 'storage_driver = "vfs"' in effective and 'cgroup_manager = "cgroupfs"' in effective
    assert "drop_infra_ctr = true" in effective, "CRI-O's default, as real fleets run it"
    assert "image" not in tomllib.loads(crio.dropin().decode())["crio"], "no pause_image: the product sets it"
    assert ssh(config, "node1", "systemctl is-active containerd").stdout.strip() == "active"


@pytest.mark.parametrize("share_pid", [False, True], ids=["infra-dropped", "pid-shared"])
def test_a_real_sandbox_runs_through_crio_s_socket(crio_lab, config, share_pid):
    """With drop_infra_ctr = true only a PID-sharing sandbox runs a pause process; both are Ready with a pod IP."""
    reset_nodes(CRIO_LAB)
    ssh(config, "node2", PROBE_SETTINGS)
    forward = subprocess.Popen(
        [
            "ssh",
            "-F",
            str(config),
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            f"5000:{crio_lab['upstream']}",
            "node2",
        ]
    )
    try:
        forward_answers(config, forward)
        with forwarded_socket(config, "node2", CRIO_SOCKET) as target:
            runtime = Runtime(target)
            assert runtime.version() == ("cri-o", "1.36.3")
            sandbox = runtime.run_sandbox("lab-probe", str(uuid.uuid4()), share_pid=share_pid)
            try:
                status = runtime.sandbox_status(sandbox)
                assert status.state == "SANDBOX_READY" and status.ip.startswith("10.244."), status
                if share_pid:
                    assert status.image == PROBE_IMAGE
                    assert pause_runs(config, status.pid), f"no pause process as PID {status.pid} of the sandbox"
                else:
                    # no pause process (pid 0); the image is the one the sandbox's spec names (CRI-O's annotation)
                    assert (status.image, status.pid) == (PROBE_IMAGE, 0), "CRI-O dropped the infra container"
                pinned = runtime.image_status(PROBE_IMAGE)
                assert pinned is not None and pinned.pinned, "CRI-O pins its pause_image"
            finally:
                runtime.remove_sandbox(sandbox)
            assert sandbox not in runtime.sandboxes()
    finally:
        forward.terminate()
        forward.wait()
        reset_nodes(CRIO_LAB)


def test_reset_leaves_the_labs_drop_in_alone_and_no_images(crio_lab, config):
    ssh(config, "node2", PROBE_SETTINGS + " && echo '# changed' >> " + crio.DROPIN)
    reset_nodes(CRIO_LAB)
    assert ssh(config, "node2", f"ls /etc/crio/crio.conf.d; ls /etc/containers; cat {crio.DROPIN}").stdout == (
        "00-podinfra-lab.conf\npolicy.json\n" + crio.dropin().decode()
    )
    with forwarded_socket(config, "node2", CRIO_SOCKET) as target:
        images = Runtime(target).images.ListImages(cri.ListImagesRequest()).images
        assert [list(image.repo_tags) for image in images] == []
