"""What podinfra.suite.internals assumes of pytest-testinfra, pinned against the installed release: how its
backends keep their target, and the private parameter that carries a test's host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import testinfra

from podinfra.suite import internals
from podinfra.suite.node import ssh_config_for


def test_an_ssh_backend_gives_its_target():
    host = testinfra.get_host("ssh://alice@node1:2222", ssh_config="/lab/ssh_config", ssh_identity_file="/lab/key")
    target = internals.ssh_target(host.backend)
    assert target == internals.SshTarget("ssh", "node1", "alice", "2222", Path("/lab/ssh_config"), "/lab/key")


def test_without_an_ssh_config_the_suite_writes_one_from_the_backends_target(tmp_path):
    host = testinfra.get_host("ssh://alice@node1:2222", ssh_identity_file="/lab/key")
    path, alias = ssh_config_for(host.backend, tmp_path)
    assert alias == "node1" and path is not None
    text = path.read_text()
    assert "User alice" in text and "Port 2222" in text and "IdentityFile /lab/key" in text


def test_the_local_backend_needs_no_ssh():
    assert ssh_config_for(testinfra.get_host("local://").backend, Path("/nowhere")) == (None, "localhost")


def test_a_tests_host_is_the_parameter_testinfra_gives_it(tmp_path):
    (tmp_path / "test_it.py").write_text(
        "from podinfra.suite import internals\n"
        "def test_it(request, host):\n"
        "    assert internals.host_of(request.node) is host\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=local://", "test_it.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:]
