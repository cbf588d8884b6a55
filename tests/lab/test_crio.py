"""The whole flow on the CRI-O lab (`crio_lab`: node1 runs containerd 2.1, node2 CRI-O 1.36 with its
defaults, drop_infra_ctr = true among them): registry, mirror and node deploys, a 0-change re-run, every
check on both nodes, the local registry's pause in the running CRI-O, pulls that reach the local registry
only, a restart that running pods survive, a rollback, and the drift cases.

The module brings its lab to a known state itself (registry, mirror, node for Kubernetes 1.31)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2 as cri

from podinfra.check.cri import Runtime, forwarded_socket
from podinfra.node import crio

from .conftest import CRIO_LAB, PODINFRA, PYINFRA, changes, reset_nodes, ssh, totals

pytestmark = pytest.mark.lab
PAUSE = "registry.k8s.io/pause:3.10"  # Kubernetes 1.31's
# No kubelet on the lab's nodes: check 4 has nothing to check.
ALL_PASS = {**{str(i): "PASS" for i in range(1, 10)}, "4": "INFO"}
# Makes node2's CRI-O refuse to start once a drop-in names podinfra's auth file, as a broken config would.
REFUSE = (
    "mv /usr/local/bin/crio /usr/local/bin/crio.real && printf '%s\\n' '#!/bin/sh'"
    " 'if [ $# -eq 0 ] && grep -rqs podinfra-auth.json /etc/crio/crio.conf.d; then'"
    " 'echo \"config rejected\" >&2; exit 1; fi' 'exec /usr/local/bin/crio.real \"$@\"'"
    " > /usr/local/bin/crio && chmod 755 /usr/local/bin/crio"
)
HEAL = "mv -f /usr/local/bin/crio.real /usr/local/bin/crio"


def deploy(lab: dict[str, Any], name: str, version: str = "1.31", *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODINFRA_LAB": CRIO_LAB, "PODINFRA_KUBERNETES_VERSION": version}
    command = [PYINFRA, "-y", "--json", *extra, lab["inventory"], f"deploys/{name}.py"]
    return subprocess.run(command, capture_output=True, text=True, env=env)


def deployed(lab: dict[str, Any], name: str, version: str = "1.31", *extra: str) -> subprocess.CompletedProcess[str]:
    result = deploy(lab, name, version, *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check(lab: dict[str, Any], tmp_path: Path, *extra: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """(node -> check -> status, "node/check" -> actual) of a `podinfra check` of the CRI-O lab."""
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    env = {**os.environ, "PODINFRA_LAB": CRIO_LAB, "PODINFRA_KUBERNETES_VERSION": "1.31"}
    result = subprocess.run(
        [*PODINFRA, "check", lab["inventory"], "--json", str(report), *extra], capture_output=True, text=True, env=env
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    controls = json.loads(report.read_text())["Controls"]
    found = {c["node"]: {r["test_number"]: r["status"] for r in c["tests"][0]["results"]} for c in controls}
    # what a check saw, with its status where it is not PASS, so that a failed assertion names it
    actual = {
        f"{c['node']}/{r['test_number']}": ("" if r["status"] == "PASS" else f"{r['status']}: ") + r["actual_value"]
        for c in controls
        for r in c["tests"][0]["results"]
    }
    return found, actual


def not_passed(actual: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in actual.items() if v.startswith(("FAIL", "WARN")))


@pytest.fixture(scope="module")
def config(crio_lab) -> Path:
    return Path(crio_lab["ssh"]["config"])


@pytest.fixture(scope="module")
def fleet(crio_lab, config):
    reset_nodes(CRIO_LAB)
    for name in ("registry", "mirror", "node"):
        deployed(crio_lab, name)
    return crio_lab


def running_pause(config: Path) -> str:
    found = crio.running_config(ssh(config, "node2", "crio status config").stdout)
    assert found is not None, "crio status config did not answer"
    return str(found["pause_image"])


def test_the_deploys_configure_both_nodes_and_a_rerun_changes_nothing(fleet, config):
    # node2: CRI-O, though containerd's binary is there (masked); node1: containerd
    assert ssh(config, "node2", "containerd --version").returncode == 0
    files = ssh(config, "node2", f"ls /etc/crio/crio.conf.d; stat -c '%a %U' {crio.AUTH_FILE}").stdout.split()
    assert files == ["00-podinfra-lab.conf", "90-podinfra.conf", "600", "root"]
    local = fleet["registries"]["local"]["address"]
    assert ssh(config, "node2", "ls /etc/containers/certs.d").stdout.split() == [local]
    assert ssh(config, "node2", f"test -f /etc/containers/certs.d/{local}/ca.crt").returncode == 0
    assert running_pause(config) == PAUSE
    for name in ("registry", "mirror", "node"):
        again = deployed(fleet, name)
        assert totals(again)["success"] == 0, changes(again)


def test_every_check_passes_on_both_nodes(fleet, tmp_path):
    found, actual = check(fleet, tmp_path)
    assert found == {"node1": ALL_PASS, "node2": ALL_PASS}, not_passed(actual)
    # under drop_infra_ctr = true the probes say which case they proved
    assert "proven on a PID-sharing sandbox" in actual["node2/7"] and "pause ran as pid" in actual["node2/7"]
    assert "drop_infra_ctr" in actual["node2/8"]
    assert actual["node2/2"].startswith(f"pause_image = '{PAUSE}' (running; set in {crio.DROPIN})")


def remove_image(config: Path, image: str) -> None:
    with forwarded_socket(config, "node2", crio.SOCKET) as target:
        runtime = Runtime(target)
        if runtime.image_status(image) is not None:
            runtime.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=image)), timeout=30)
        assert runtime.image_status(image) is None


# Listens where registry.k8s.io would be reached from node2 (its /etc/hosts sends the name there) and
# records every connection: a pull that tried the upstream shows in the file.
UPSTREAM_TRAP = r"""
grep -q ' registry.k8s.io$' /etc/hosts || echo '127.0.0.1 registry.k8s.io' >> /etc/hosts
nohup python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 443)); s.listen()
while True:
    c, a = s.accept(); open("/tmp/upstream-trap", "a").write(f"{a}\n"); c.close()
' >/dev/null 2>&1 &
echo $! > /tmp/upstream-trap.pid
"""


def test_crio_runs_the_local_registrys_pause_and_pulls_it_from_there_only(fleet, config):
    assert running_pause(config) == PAUSE
    node_ip = next(n["address"] for n in fleet["nodes"] if n["name"] == "node2")
    ssh(config, "node2", UPSTREAM_TRAP)
    try:
        remove_image(config, PAUSE)
        ssh(config, "registry", "truncate -s 0 /var/log/nginx/access.log")
        with forwarded_socket(config, "node2", crio.SOCKET) as target:
            runtime = Runtime(target)
            runtime.pull(PAUSE)
            status = runtime.image_status(PAUSE)
            assert status is not None and status.pinned, "CRI-O pins its pause_image"
        log = ssh(config, "registry", "cat /var/log/nginx/access.log").stdout
        assert f"{node_ip} " in log and "/v2/pause/manifests/3.10" in log, log[-2000:]
        trapped = ssh(config, "node2", "cat /tmp/upstream-trap 2>/dev/null", check=False).stdout
        assert trapped == "", f"a pull reached for registry.k8s.io: {trapped}"
    finally:
        ssh(
            config, "node2", "kill $(cat /tmp/upstream-trap.pid); sed -i '/ registry.k8s.io$/d' /etc/hosts", check=False
        )


def test_the_local_mode_pause_image_is_the_local_reference_in_the_running_crio(fleet, config, tmp_path):
    try:
        deployed(fleet, "node", "1.31", "--data", "sandbox_image_mode=local")
        local = running_pause(config)
        # the digest alone (no tag): CRI-O pins a pause_image it finds whole among its store's names
        assert local.startswith(f"{fleet['registries']['local']['address']}/pause@sha256:"), local
        found, actual = check(fleet, tmp_path, "--limit", "node2", "--data", "sandbox_image_mode=local")
        assert found == {"node2": ALL_PASS}, not_passed(actual)
    finally:
        deployed(fleet, "node")
    assert running_pause(config) == PAUSE


def test_a_restart_keeps_running_pods(fleet, config):
    """An operator's drop-in sets another global_auth_file, which CRI-O reads at start only: the deploy comments
    it out and restarts CRI-O; a running pod (its infra dropped, a container running) survives, same process."""
    other = "/etc/crio/crio.conf.d/95-other-auth.conf"
    ssh(config, "node2", f"printf '[crio.image]\\nglobal_auth_file = \"/etc/crio/other.json\"\\n' > {other}")
    ssh(config, "node2", "systemctl restart crio && crio status config | grep -q other.json")
    image = "registry.k8s.io/podinfra/probe:1"
    with forwarded_socket(config, "node2", crio.SOCKET) as target:
        runtime = Runtime(target)
        if runtime.image_status(image) is None:
            runtime.pull(image)
        sandbox = runtime.run_sandbox("survivor", str(uuid.uuid4()), namespace="podinfra-test")
        app = runtime.create_container(sandbox, "app", image, ["/bin/busybox", "sleep", "3600"])
        runtime.start_container(app)
        before = ssh(config, "node2", "pgrep -f 'busybox sleep 3600'").stdout.split()
    try:
        result = deployed(fleet, "node")
        assert any("CRI-O runs its config" in c for c in changes(result)), changes(result)
        assert ssh(config, "node2", f"grep -c '^# global_auth_file' {other}").stdout.strip() == "1"
        assert (
            crio.running_config(ssh(config, "node2", "crio status config").stdout)["global_auth_file"] == crio.AUTH_FILE
        )  # type: ignore[index]
        with forwarded_socket(config, "node2", crio.SOCKET) as target:
            runtime = Runtime(target)
            assert runtime.sandbox_status(sandbox).state == "SANDBOX_READY"
            assert runtime.container_state(app) == "CONTAINER_RUNNING"
            assert ssh(config, "node2", "pgrep -f 'busybox sleep 3600'").stdout.split() == before
            runtime.remove_sandbox(sandbox)
    finally:
        ssh(config, "node2", f"rm -f {other} /etc/crio/95-other-auth.conf.podinfra-backup", check=False)


def test_a_crio_that_does_not_come_back_is_rolled_back(fleet, config):
    reset_nodes(CRIO_LAB)
    ssh(config, "node2", REFUSE)
    try:
        result = deploy(fleet, "node")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "previous config restored, CRI-O restarted" in output, output[-3000:]
        assert "CRI-O did not come back running the wanted pause_image within 30s" in output
        assert ssh(config, "node2", "ls /etc/crio/crio.conf.d").stdout.split() == ["00-podinfra-lab.conf"]
        assert ssh(config, "node2", "systemctl is-active crio").stdout.strip() == "active"
        assert ssh(config, "node1", "systemctl is-active containerd").stdout.strip() == "active"
    finally:
        ssh(config, "node2", HEAL)
    deployed(fleet, "node")
    assert running_pause(config) == PAUSE


def test_a_dropin_overriding_pause_image_fails_check_2_by_name_and_the_deploy_converges(fleet, config, tmp_path):
    drift = "/etc/crio/crio.conf.d/99-drift.conf"
    ssh(config, "node2", f"printf '[crio.image]\\npause_image = \"registry.k8s.io/pause:3.9\"\\n' > {drift}")
    ssh(config, "node2", "systemctl reload crio")
    deadline = time.monotonic() + 30
    while running_pause(config) != "registry.k8s.io/pause:3.9" and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        found, actual = check(fleet, tmp_path, "--limit", "node2")
        assert (
            found["node2"]["2"] == "FAIL"
            and f"{drift} sets pause_image = 'registry.k8s.io/pause:3.9'" in actual["node2/2"]
        )
        deployed(fleet, "node")
        assert running_pause(config) == PAUSE
        found, actual = check(fleet, tmp_path, "--limit", "node2")
        assert found == {"node2": ALL_PASS}, not_passed(actual)
    finally:
        ssh(config, "node2", f"rm -f {drift} /etc/crio/99-drift.conf.podinfra-backup && systemctl reload crio")


def test_a_registries_conf_that_allows_fallback_fails_check_3_by_name_and_the_deploy_converges(fleet, config, tmp_path):
    fallback = "/etc/containers/registries.conf.d/99-fallback.conf"
    text = (
        '[[registry]]\\nprefix = "registry.k8s.io"\\nlocation = "registry.k8s.io"\\n'
        '[[registry.mirror]]\\nlocation = "LOCAL"\\n'
    )
    local = ssh(
        config, "node2", f"sed -n 's/^location = \"\\(.*\\)\"/\\1/p' {crio.REGISTRIES_DROPIN} | head -n1"
    ).stdout.strip()
    ssh(config, "node2", f"printf '{text.replace('LOCAL', local)}' > {fallback}")
    try:
        found, actual = check(fleet, tmp_path, "--limit", "node2")
        assert found["node2"]["3"] == "FAIL", actual
        assert actual["node2/3"].startswith(
            f"FAIL: {fallback}: [[registry]] prefix 'registry.k8s.io' lets pulls of {PAUSE} go to registry.k8s.io"
        )
        result = deployed(fleet, "node")
        edit = f"{fallback}: [[registry]] registry.k8s.io left to podinfra's drop-in"
        assert [c for c in changes(result) if c.endswith(edit)], changes(result)
        shown = ssh(config, "node2", f"cat {fallback}").stdout
        assert shown.startswith(f"# podinfra: pulls of registry.k8s.io are set in {crio.REGISTRIES_DROPIN}\n"), shown
        found, actual = check(fleet, tmp_path, "--limit", "node2")
        assert found == {"node2": ALL_PASS}, not_passed(actual)
        assert changes(deployed(fleet, "node")) == []
    finally:
        ssh(config, "node2", f"rm -f {fallback} {fallback}.podinfra-backup")


def test_old_pause_remove_removes_the_old_pause_once_no_sandbox_was_made_from_it(fleet, config):
    """An upgrade to Kubernetes 1.35 (pause 3.10.1) with old_pause: remove. A pod made from pause:3.10 (its infra
    container running) keeps it; once the pod is gone, the next deploy removes it, and the one after changes
    nothing."""
    new, remove = "registry.k8s.io/pause:3.10.1", ("--data", "old_pause=remove")
    deployed(fleet, "mirror", "1.35")
    with forwarded_socket(config, "node2", crio.SOCKET) as target:
        sandbox = Runtime(target).run_sandbox("old-pod", str(uuid.uuid4()), namespace="podinfra-test", share_pid=True)
    try:
        upgraded = deployed(fleet, "node", "1.35", *remove)
        assert running_pause(config) == new
        release = "older pause images released once unused"
        assert not [c for c in changes(upgraded) if c.startswith("node2:") and c.endswith(release)], changes(upgraded)
        with forwarded_socket(config, "node2", crio.SOCKET) as target:
            runtime = Runtime(target)
            assert runtime.image_status(PAUSE) is not None, "a sandbox was made from it: kept"
            assert runtime.image_status(new) is not None
            runtime.remove_sandbox(sandbox)
        released = deployed(fleet, "node", "1.35", *remove)
        assert [c for c in changes(released) if c.startswith("node2:")] == [f"node2: podinfra node runtime | {release}"]
        with forwarded_socket(config, "node2", crio.SOCKET) as target:
            runtime = Runtime(target)
            assert runtime.image_status(PAUSE) is None and runtime.image_status(new) is not None
        assert changes(deployed(fleet, "node", "1.35", *remove)) == []
    finally:
        with forwarded_socket(config, "node2", crio.SOCKET) as target:
            runtime = Runtime(target)
            if sandbox in runtime.sandboxes():
                runtime.remove_sandbox(sandbox)
        deployed(fleet, "node")  # back at 1.31 (pause:3.10 pulled again) for the tests after this one
    assert running_pause(config) == PAUSE
