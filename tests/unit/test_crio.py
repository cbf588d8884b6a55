"""CRI-O without a node: which runtime a node runs, what the node deploy writes for CRI-O and when it reloads
or restarts it, and the CRI-O branches of the checks, fed output shaped as CRI-O 1.36 and containers' docs
give it (``crio status config`` is the daemon's TOML; registries.conf(5) and its drop-ins)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.facts.files import Sha256File

from podinfra.check import catalogue
from podinfra.check.cri import ImageInfo
from podinfra.data import pki
from podinfra.data.models import NodeData
from podinfra.deploys import node as node_deploy
from podinfra.node import crio, facts, operations, restart, runtime
from podinfra.node import registries as registries_conf
from podinfra.suite import crio_checks
from podinfra.suite import test_checks as checks
from podinfra.suite.node import CRI, Node
from tests.unit.test_operations import FakeHost, commands, fact, on

PAUSE = "registry.k8s.io/pause:3.10"
DIGEST = "sha256:" + "a" * 64

# --- which runtime the node runs ------------------------------------------------------------------------

CONTAINERD_V = "version containerd containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"
CRIO_V = "version crio crio version 1.36.3"


def seen(*lines: str) -> runtime.Seen:
    return facts.NodeRuntime().process(list(lines))


def test_the_runtime_is_the_one_that_runs_not_the_one_whose_binary_is_there():
    # containerd's binary present and stopped (masked), CRI-O active: a CRI-O node
    found = runtime.choose(
        seen(
            CONTAINERD_V, CRIO_V, "active containerd inactive", "active crio active",
            "listen crio /var/run/crio/crio.sock",
        )
    )  # fmt: skip
    assert (found.runtime, found.version, found.socket) == ("cri-o", "1.36.3", "/var/run/crio/crio.sock")
    assert found.reason == "CRI-O runs and containerd does not"
    # its service not active, but its socket answering: it runs
    assert runtime.choose(seen(CONTAINERD_V, CRIO_V, "listen containerd /run/containerd/containerd.sock")).runtime == (
        "containerd"
    )
    assert runtime.choose(seen(CRIO_V)).reason == "CRI-O is installed (not running) and containerd is not"


def test_the_kubelet_endpoint_decides_where_a_kubelet_is_configured():
    flags = 'kubelet /var/lib/kubelet/kubeadm-flags.env\tKUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/crio/crio.sock"'
    found = runtime.choose(seen(CONTAINERD_V, CRIO_V, "active containerd inactive", flags))
    assert found.runtime == "cri-o" and "kubeadm-flags.env" in found.reason
    # kubeadm 1.34+ (NodeLocalCRISocket): instance-config.yaml, patched over config.yaml
    config = "kubelet /var/lib/kubelet/config.yaml\tcontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock"
    instance = "kubelet /var/lib/kubelet/instance-config.yaml\tcontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock"
    assert runtime.choose(seen(CONTAINERD_V, CRIO_V, config, instance)).runtime == "cri-o"
    assert runtime.choose(seen(CONTAINERD_V, CRIO_V, config)).runtime == "containerd"
    weird = "kubelet /var/lib/kubelet/config.yaml\tcontainerRuntimeEndpoint: unix:///run/other.sock"
    with pytest.raises(runtime.NoRuntime, match="neither containerd's nor CRI-O's socket"):
        runtime.choose(seen(CONTAINERD_V, CRIO_V, weird))


def test_a_node_where_both_run_is_refused_by_name_unless_cri_socket_says_which():
    both = seen(
        CONTAINERD_V, CRIO_V, "active containerd active", "active crio active",
        "listen containerd /run/containerd/containerd.sock", "listen crio /var/run/crio/crio.sock",
    )  # fmt: skip
    with pytest.raises(runtime.NoRuntime, match="both containerd and CRI-O run on this node: .*cri_socket"):
        runtime.choose(both)
    assert runtime.choose(both, "/var/run/crio/crio.sock").runtime == "cri-o"
    assert runtime.choose(both, "/run/containerd/containerd.sock").runtime == "containerd"
    with pytest.raises(runtime.NoRuntime, match="neither containerd nor CRI-O listens there"):
        runtime.choose(both, "/run/docker.sock")


def test_a_runtime_named_but_not_installed_or_none_at_all_is_refused():
    with pytest.raises(runtime.NoRuntime, match="neither containerd nor CRI-O is installed"):
        runtime.choose(seen("version containerd ", "version crio "))
    with pytest.raises(runtime.NoRuntime, match="CRI-O is not installed"):
        runtime.choose(seen(CONTAINERD_V), "unix:///var/run/crio/crio.sock")
    with pytest.raises(runtime.NoRuntime, match="both installed and neither runs"):
        runtime.choose(seen(CONTAINERD_V, CRIO_V))


def test_cri_socket_is_a_unix_endpoint_or_an_absolute_path():
    base = {"kubernetes_version": "1.31", "local_registry": "10.0.0.2:5000", "registry_ca": "system"}
    assert NodeData(**base, cri_socket="unix:///var/run/crio/crio.sock").cri_socket == "/var/run/crio/crio.sock"
    assert (
        NodeData(**base, cri_socket="/run/containerd/containerd.sock").cri_socket == "/run/containerd/containerd.sock"
    )
    for bad in ("tcp://10.0.0.1:1234", "crio.sock", "unix://relative.sock"):
        with pytest.raises(ValueError, match="unix:///PATH or /PATH"):
            NodeData(**base, cri_socket=bad)


# --- the node deploy's CRI-O files ----------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> NodeData:
    ca, _ = pki.ensure_ca(tmp_path / "pki")
    return NodeData(
        kubernetes_version="1.31", local_registry="10.0.0.2:5000", registry_ca=str(ca), registry_pull_password="s3cret"
    )


def deployed(
    monkeypatch: pytest.MonkeyPatch,
    settings: NodeData,
    files: list[tuple[str, str]],
    registries: list[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """The operations the CRI-O part of the node deploy calls, with their arguments."""
    calls: list[dict[str, Any]] = []

    def recorder(kind: str):
        def record(**kwargs: Any) -> Any:
            calls.append({"op": kind, **kwargs})
            return SimpleNamespace(did_change=lambda: False, will_change=False)

        return record

    for name in ("config_file", "crio_restarted", "crio_pause_pulled", "crio_old_pause_released", "failed"):
        monkeypatch.setattr(node_deploy, name, recorder(name))
    monkeypatch.setattr(node_deploy, "rollout", lambda allowed, batch: restart.Rollout(allowed, batch))
    monkeypatch.setattr(node_deploy, "_fleet", lambda: 1)
    texts = dict(files)
    found = registries or [(crio.REGISTRIES_CONF, "")]
    fake = FakeHost(dict([fact(facts.CrioConfigFiles, files), fact(facts.CrioRegistriesFiles, found)]))
    monkeypatch.setattr(node_deploy, "_text", lambda path: texts.get(path))
    with on(fake):
        node_deploy.crio(settings, PAUSE, crio.SOCKET)
    return calls


def test_crio_gets_the_ca_and_credential_where_it_reads_them(monkeypatch, settings):
    calls = deployed(monkeypatch, settings, [])
    written = {c["path"]: c for c in calls if c["op"] == "config_file"}
    assert written["/etc/containers/certs.d/10.0.0.2:5000/ca.crt"]["content"] == settings.ca.read_text()  # type: ignore[union-attr]
    auth = written[crio.AUTH_FILE]
    assert auth["mode"] == "0600" and '"10.0.0.2:5000"' in auth["content"] and "s3cret" in auth["secrets"]
    dropin = written[crio.DROPIN]
    assert dropin["aside"] == "/etc/crio"  # no backup or half-written file inside crio.conf.d
    assert 'global_auth_file = "/etc/crio/podinfra-auth.json"' in dropin["content"]
    assert f'pause_image = "{PAUSE}"' in dropin["content"]
    assert 'location = "10.0.0.2:5000"' in written[crio.REGISTRIES_DROPIN]["content"]
    assert "/etc/podinfra/registry-ca.crt" not in written  # containerd's place, which CRI-O never reads
    restarted = next(c for c in calls if c["op"] == "crio_restarted")
    assert restarted["auth_file"] == crio.AUTH_FILE and restarted["image"] == PAUSE
    assert calls[-2:] == [
        {"op": "crio_pause_pulled", "name": f"{PAUSE} pulled by CRI-O", "image": PAUSE, "socket": crio.SOCKET},
        {
            "op": "crio_old_pause_released",
            "name": "older pause images released once unused",
            "image": PAUSE,
            "policy": "unpin",
            "socket": crio.SOCKET,
        },
    ]


def test_a_later_dropin_setting_pause_image_is_commented_out_and_can_be_rolled_back(monkeypatch, settings):
    files = [
        ("/etc/crio/crio.conf.d/00-lab.conf", '[crio]\nstorage_driver = "vfs"\n'),
        (crio.DROPIN, crio.dropin(PAUSE, crio.AUTH_FILE)),
        (
            "/etc/crio/crio.conf.d/99-drift.conf",
            '[crio.image]\npause_image = "quay.io/x/pause:1"\npinned_images = []\n',
        ),
    ]
    calls = deployed(monkeypatch, settings, files)
    edited = next(c for c in calls if c["op"] == "config_file" and c["path"].endswith("99-drift.conf"))
    assert edited["content"] == (
        '[crio.image]\n# pause_image = "quay.io/x/pause:1"  # podinfra: set in /etc/crio/crio.conf.d/90-podinfra.conf\n'
        "pinned_images = []\n"
    )
    restarted = next(c for c in calls if c["op"] == "crio_restarted")
    assert [(w.path, w.backup) for w in restarted["written"]] == [
        (crio.REGISTRIES_DROPIN, f"{crio.REGISTRIES_DROPIN}.podinfra-backup"),
        (crio.DROPIN, "/etc/crio/90-podinfra.conf.podinfra-backup"),
        ("/etc/crio/crio.conf.d/99-drift.conf", "/etc/crio/99-drift.conf.podinfra-backup"),
    ]


def test_config_file_aside_keeps_temporary_and_backup_files_out_of_the_directory():
    fake = FakeHost(dict([fact(Sha256File, None, path=crio.DROPIN)]))
    found = commands(operations.config_file, fake, path=crio.DROPIN, content="x\n", aside=crio.ASIDE)
    assert found[2] == "upload /etc/crio/90-podinfra.conf.podinfra-new"
    assert "cp -p /etc/crio/crio.conf.d/90-podinfra.conf /etc/crio/90-podinfra.conf.podinfra-backup" in found[3]


# --- CRI-O reloaded or restarted on its files ------------------------------------------------------------


def crio_commands(running: dict[str, Any] | None, registries_change: bool = False, auth: str | None = crio.AUTH_FILE):
    fake = FakeHost(dict([fact(facts.CrioRunningConfig, running, socket=crio.SOCKET)]))
    meta = SimpleNamespace(will_change=registries_change)
    with on(fake, executing=False):
        out = list(
            restart.crio_restarted._inner(
                image=PAUSE, auth_file=auth, written=[], registries=[meta], rollout=restart.Rollout(0, 1)
            )
        )
    return [c.args[2] for c in out], fake.noops


def test_crio_restarts_for_global_auth_file_and_reloads_for_pause_image_or_registries():
    ours = {"pause_image": PAUSE, "global_auth_file": crio.AUTH_FILE}
    assert crio_commands(None)[0] == ["restart"]  # not running
    assert crio_commands({**ours, "global_auth_file": ""})[0] == ["restart"]  # read at start only
    assert crio_commands({**ours, "pause_image": "registry.k8s.io/pause:3.10.1"})[0] == ["reload"]
    assert crio_commands(ours, registries_change=True)[0] == ["reload"]
    assert crio_commands(ours) == ([], [f"CRI-O runs its config (pause_image {PAUSE!r})"])
    assert crio_commands({"pause_image": PAUSE}, auth=None)[0] == []


def test_crio_running_config_from_crio_status_config():
    # `crio status config` is the daemon's config as TOML (BurntSushi/toml: nested tables indented)
    output = [
        "[crio]", '  root = "/var/lib/containers/storage"', '  storage_driver = "vfs"', "  [crio.api]",
        '    listen = "/var/run/crio/crio.sock"', "  [crio.image]", '    default_transport = "docker://"',
        '    global_auth_file = "/etc/crio/podinfra-auth.json"', f'    pause_image = "{PAUSE}"',
        '    pause_image_auth_file = ""', '    pause_command = "/pause"', f'    pinned_images = ["{PAUSE}"]',
    ]  # fmt: skip
    found = facts.CrioRunningConfig().process(output)
    assert found is not None and found["pause_image"] == PAUSE and found["global_auth_file"] == crio.AUTH_FILE
    assert facts.CrioRunningConfig().process([]) is None
    wanted = restart.CrioWanted({"pause_image": "registry.k8s.io/pause:3.10.1"}, crio.SOCKET)
    assert wanted.differences(found) == (
        "the running CRI-O's config (crio status config) has "
        f"pause_image = {PAUSE!r}, not 'registry.k8s.io/pause:3.10.1'"
    )


def test_a_registries_table_that_would_decide_instead_of_podinfras_is_commented_out(monkeypatch, settings):
    main = (
        'unqualified-search-registries = ["docker.io"]\n[[registry]]\nprefix = "registry.k8s.io"\n'
        'location = "registry.k8s.io"\n'
    )
    fallback = (
        '[[registry]]\nprefix = "registry.k8s.io"\nlocation = "registry.k8s.io"\n[[registry.mirror]]\n'
        'location = "10.0.0.2:5000"\n[[registry]]\nprefix = "quay.io"\nlocation = "quay.io"\n'
    )
    later = "/etc/containers/registries.conf.d/99-fallback.conf"
    calls = deployed(monkeypatch, settings, [], [(crio.REGISTRIES_CONF, main), (later, fallback)])
    edited = {c["path"]: c["content"] for c in calls if c["op"] == "config_file"}
    # registries.conf's own table is replaced by podinfra's drop-in (same prefix, read later): left alone
    assert crio.REGISTRIES_CONF not in edited
    assert edited[later] == (
        f"# podinfra: pulls of registry.k8s.io are set in {crio.REGISTRIES_DROPIN}\n# [[registry]]\n"
        '# prefix = "registry.k8s.io"\n# location = "registry.k8s.io"\n# [[registry.mirror]]\n'
        '# location = "10.0.0.2:5000"\n[[registry]]\nprefix = "quay.io"\nlocation = "quay.io"\n'
    )
    restarted = next(c for c in calls if c["op"] == "crio_restarted")
    assert [w.path for w in restarted["written"]] == [crio.REGISTRIES_DROPIN, later, crio.DROPIN]
    assert len(restarted["registries"]) == 2  # a change of either is a reload
    merged = registries_conf.merge(
        [(crio.REGISTRIES_CONF, main), (crio.REGISTRIES_DROPIN, edited[crio.REGISTRIES_DROPIN]), (later, edited[later])]
    )
    assert registries_conf.registry_problems(merged, "registry.k8s.io/pause:3.10", "10.0.0.2:5000") == []


def test_a_registries_table_podinfra_cannot_comment_out_fails_the_node_before_anything_is_written(
    monkeypatch, settings
):
    inline = 'registry = [{prefix = "registry.k8s.io", location = "registry.k8s.io"}]\n'
    later = "/etc/containers/registries.conf.d/99-inline.conf"
    calls = deployed(monkeypatch, settings, [], [(crio.REGISTRIES_CONF, ""), (later, inline)])
    assert [c["op"] for c in calls] == ["failed"]
    assert calls[0]["reason"].startswith(f"{later}: its [[registry]] of prefix 'registry.k8s.io' sends pulls past")


# --- registries.conf and its drop-ins, merged as containers-registries.conf.d(5) says ---------------------


def test_each_registries_file_is_parsed_on_its_own_so_two_with_aliases_merge():
    main = '[aliases]\n"busybox" = "docker.io/library/busybox"\n"x" = "quay.io/x"\n'
    dropin = '[aliases]\n"pause" = "registry.k8s.io/pause"\n"x" = ""\n'
    merged = registries_conf.merge([("/etc/containers/registries.conf", main), ("/d/10.conf", dropin)])
    assert merged.aliases == {
        "busybox": ("docker.io/library/busybox", "/etc/containers/registries.conf"),
        "pause": ("registry.k8s.io/pause", "/d/10.conf"),
    }
    assert merged.problems == []


def test_a_later_table_with_the_same_prefix_replaces_the_entry_whole_and_search_is_replaced():
    ours = crio.registries_conf(["registry.k8s.io"], "10.0.0.2:5000")
    later = (
        'unqualified-search-registries = ["docker.io"]\n[[registry]]\nprefix = "registry.k8s.io"\n'
        'location = "registry.k8s.io"\n[[registry.mirror]]\nlocation = "10.0.0.2:5000"\n'
    )
    main = 'unqualified-search-registries = ["quay.io", "docker.io"]\n'
    merged = registries_conf.merge([("/main", main), ("/d/90-podinfra.conf", ours), ("/d/99-fallback.conf", later)])
    assert merged.search == (["docker.io"], "/d/99-fallback.conf")
    assert registries_conf.registry_problems(merged, PAUSE, "10.0.0.2:5000") == [
        "/d/99-fallback.conf: [[registry]] prefix 'registry.k8s.io' lets pulls of registry.k8s.io/pause:3.10 go to "
        "registry.k8s.io"
    ]
    alone = registries_conf.merge([("/main", main), ("/d/90-podinfra.conf", ours)])
    assert registries_conf.registry_problems(alone, PAUSE, "10.0.0.2:5000") == []
    assert registries_conf.physical(alone, PAUSE) == "10.0.0.2:5000/pause:3.10"


def test_blocked_upstream_with_mirrors_is_mirror_only_and_the_longest_prefix_wins():
    blocked = (
        '[[registry]]\nprefix = "registry.k8s.io"\nlocation = "registry.k8s.io"\nblocked = true\n'
        '[[registry.mirror]]\nlocation = "10.0.0.2:5000/k8s"\n'
    )
    merged = registries_conf.merge([("/r", blocked)])
    assert registries_conf.registry_problems(merged, PAUSE, "10.0.0.2:5000") == []
    assert registries_conf.physical(merged, PAUSE) == "10.0.0.2:5000/k8s/pause:3.10"
    longer = blocked + '[[registry]]\nprefix = "registry.k8s.io/pause"\nlocation = "quay.io/pause"\n'
    found = registries_conf.registry_problems(registries_conf.merge([("/r", longer)]), PAUSE, "10.0.0.2:5000")
    assert found == [
        "/r: [[registry]] prefix 'registry.k8s.io/pause' lets pulls of registry.k8s.io/pause:3.10 go to quay.io/pause"
    ]
    assert registries_conf.registry_problems(registries_conf.merge([("/r", "")]), PAUSE, "r:1")[0].startswith(
        "no [[registry]]"
    )


def test_a_broken_or_v1_dropin_is_named():
    merged = registries_conf.merge(
        [("/main", ""), ("/d/a.conf", "[[registry]\n"), ("/d/b.conf", "[registries.search]\n")]
    )
    assert [p.split(" ")[0] for p in merged.problems] == ["/d/a.conf", "/d/b.conf"]
    assert "every pull fails" in merged.problems[0] and "v1 format" in merged.problems[1]
    assert not registries_conf.merge([("/etc/containers/registries.conf", "[registries.search]\n")]).problems
    alone = registries_conf.merge([("/d/a.conf", "[registries.search]\n")])  # no registries.conf on the node
    named = registries_conf.merge([("/etc/containers/registries.conf.d/registries.conf", "[registries.search]\n")])
    assert named.problems and "v1 format" in named.problems[0]
    assert alone.problems and alone.problems[0].startswith("/d/a.conf is in v1 format")


# --- checks 2, 3, 5, 6, 7 on a CRI-O node ----------------------------------------------------------------

STATUS = f'[crio]\n  [crio.image]\n    global_auth_file = "{crio.AUTH_FILE}"\n    pause_image = "{PAUSE}"\n'
LAB = '[crio]\nstorage_driver = "vfs"\n'


def crio_node(
    settings: NodeData, status: str = STATUS, dropins: dict[str, str] | None = None, registries: str = ""
) -> Node:
    files = {
        "crio file /etc/crio/crio.conf.d/00-lab.conf": LAB,
        f"crio file {crio.DROPIN}": crio.dropin(PAUSE, crio.AUTH_FILE),
    }
    files.update({f"crio file {path}": text for path, text in (dropins or {}).items()})
    shown = {"crio status config": status, **files}
    shown[f"registries file {crio.REGISTRIES_DROPIN}"] = registries or crio.registries_conf(
        ["registry.k8s.io"], "10.0.0.2:5000"
    )
    shown["sha256"] = f"{readers_ca_digest(settings)}  {crio.ca_path('10.0.0.2:5000')}\n"
    expect = catalogue.expectations(settings.model_copy(update={"pause_digest": DIGEST}), ask_registry=False)
    return Node("n1", None, expect, "cri-o", "1.36.3", crio.SOCKET, "test", None, "n1", shown)


def readers_ca_digest(settings: NodeData) -> str:
    import hashlib

    return hashlib.sha256(settings.ca.read_bytes()).hexdigest()  # type: ignore[union-attr]


def run_check(check: Any, check_id: str, *args: Any, **kwargs: Any) -> catalogue.CheckResult:
    record = catalogue.catalogue(check_id).result()
    try:
        check(*args, record=record, **kwargs)
    except AssertionError:
        record.status = "fail"
    return record


def test_check_2_passes_on_the_running_pause_and_names_a_dropin_that_overrides_it(settings):
    ok = run_check(checks.test_running_runtime_uses_the_sandbox_image, "2", crio_node(settings), None)
    assert ok.status == "pass" and ok.actual == f"pause_image = {PAUSE!r} (running; set in {crio.DROPIN})"
    drift = {"/etc/crio/crio.conf.d/99-drift.conf": '[crio.image]\npause_image = "quay.io/x/pause:1"\n'}
    status = STATUS.replace(PAUSE, "quay.io/x/pause:1")
    found = run_check(checks.test_running_runtime_uses_the_sandbox_image, "2", crio_node(settings, status, drift), None)
    assert found.status == "fail"
    assert "/etc/crio/crio.conf.d/99-drift.conf sets pause_image = 'quay.io/x/pause:1' (read after" in found.actual
    pending = run_check(checks.test_running_runtime_uses_the_sandbox_image, "2", crio_node(settings, status), None)
    assert "a reload or restart is pending" in pending.actual
    down = run_check(checks.test_running_runtime_uses_the_sandbox_image, "2", crio_node(settings, ""), None)
    assert down.status == "fail" and "does not answer" in down.actual


def test_check_2_in_local_mode_wants_the_digest_alone_which_crio_pins(settings):
    local = settings.model_copy(update={"sandbox_image_mode": "local"})
    node = crio_node(local)
    wanted = node.expect.store_name
    assert wanted == f"10.0.0.2:5000/pause@{DIGEST}"
    node.shown["crio status config"] = STATUS.replace(PAUSE, wanted)
    node.shown[f"crio file {crio.DROPIN}"] = crio.dropin(wanted, crio.AUTH_FILE)
    ok = run_check(checks.test_running_runtime_uses_the_sandbox_image, "2", node, None)
    assert ok.status == "pass", ok.actual


def test_check_3_passes_on_the_rewrite_and_names_a_dropin_allowing_fallback(settings):
    ok = run_check(checks.test_mirror_config_sends_pulls_to_the_local_registry_only, "3", crio_node(settings))
    assert ok.status == "pass" and ok.actual == "registry.k8s.io -> 10.0.0.2:5000/pause:3.10 only"
    fallback = crio_node(settings)
    fallback.shown["registries file /etc/containers/registries.conf.d/99-fallback.conf"] = (
        '[[registry]]\nprefix = "registry.k8s.io"\nlocation = "registry.k8s.io"\n'
        '[[registry.mirror]]\nlocation = "10.0.0.2:5000"\n'
    )
    found = run_check(checks.test_mirror_config_sends_pulls_to_the_local_registry_only, "3", fallback)
    assert found.status == "fail" and found.actual.startswith("/etc/containers/registries.conf.d/99-fallback.conf:")
    no_ca = crio_node(settings)
    no_ca.shown["sha256"] = ""
    no_ca.answers[("sha256sum -- %s", crio.ca_path("10.0.0.2:5000"))] = SimpleNamespace(rc=1, stdout="")
    assert (
        "CRI-O does not trust"
        in run_check(checks.test_mirror_config_sends_pulls_to_the_local_registry_only, "3", no_ca).actual
    )


class FakeCRI:
    """The CRI calls checks 5 and 7 make, answered as CRI-O 1.36 answers them."""

    def __init__(self, pinned: bool = True, pid: int = 4242):
        self.pinned, self.pid, self.share_pid = pinned, pid, None

    def image_status(self, name: str) -> ImageInfo | None:
        return ImageInfo("sha256:77c", [PAUSE], [f"registry.k8s.io/pause@{DIGEST}"], self.pinned)

    def run_sandbox(self, name: str, uid: str, namespace: str, share_pid: bool, labels: dict[str, str]) -> str:
        self.share_pid = share_pid
        return "sb1"

    def sandbox_status(self, sandbox_id: str) -> Any:
        # CRI-O's verbose info: a real infra container has image and pid; a dropped one only its spec
        info = (
            {"image": PAUSE, "pid": self.pid}
            if self.share_pid
            else {"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.Image": PAUSE}}}
        )
        image, pid = crio.sandbox_pause(info)
        return SimpleNamespace(state="SANDBOX_READY", ip="10.88.0.5", image=image, pid=pid)

    def sandboxes(self, **_: Any) -> list[str]:
        return []

    def remove_sandbox(self, sandbox_id: str) -> None:
        pass


def test_check_5_reads_the_digest_and_cri_o_s_own_pin(settings):
    node = crio_node(settings)
    ok = run_check(checks.test_pause_image_is_stored_with_its_digest_and_pinned, "5", node, CRI(FakeCRI(), crio.SOCKET))  # type: ignore[arg-type]
    assert ok.status == "pass" and ok.actual == f"{PAUSE} at {DIGEST}, CRI pinned=true"
    unpinned = run_check(
        checks.test_pause_image_is_stored_with_its_digest_and_pinned, "5", node, CRI(FakeCRI(False), crio.SOCKET)
    )  # type: ignore[arg-type]
    assert unpinned.status == "fail" and unpinned.actual == "CRI pinned=false"


def test_check_6_asks_where_the_registries_send_the_pause(settings):
    url, ca, source = crio_checks.route(crio_node(settings))
    assert (url, ca, source) == (
        "https://10.0.0.2:5000/v2/pause/manifests/3.10",
        "/etc/containers/certs.d/10.0.0.2:5000/ca.crt",
        crio.REGISTRIES_DROPIN,
    )


def test_check_7_makes_a_pid_sharing_sandbox_on_cri_o_and_says_so(settings, monkeypatch):
    monkeypatch.setattr(checks, "require", lambda *args: None)
    monkeypatch.setattr(checks, "done", lambda *args: {})
    fake = FakeCRI()
    request = SimpleNamespace(config=None)
    record = run_check(
        checks.test_probe_sandbox_starts_from_the_expected_pause,
        "7",
        crio_node(settings),
        CRI(fake, crio.SOCKET),
        request=request,
    )  # type: ignore[arg-type]
    assert fake.share_pid is True and record.status == "pass"
    assert (
        "pause ran as pid 4242, proven on a PID-sharing sandbox" in record.actual and "drop_infra_ctr" in record.actual
    )


def test_a_dropped_infra_container_still_names_its_pause_image():
    # CRI-O's PodSandboxStatus(verbose) info for a sandbox without infra container: only the spec
    spoofed = {"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.Image": PAUSE, "spoofed.crio.io": "true"}}}
    assert crio.sandbox_pause(spoofed) == (PAUSE, 0)
    assert crio.sandbox_pause({"image": PAUSE, "pid": 12, "runtimeSpec": {}}) == (PAUSE, 12)
