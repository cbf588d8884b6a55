"""podinfra's facts and operations without a host, in pyinfra's own test style: fact output in, the
value out; facts given to an operation, the commands it yields (or its no-op) out. (What the rollout
assumes of pyinfra is pinned in test_pyinfra_internals.py.)"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import File, FileContents, Sha256File

from podinfra.data.fields import count_or_share
from podinfra.data.shares import of_fleet
from podinfra.node import facts, operations
from podinfra.node import restart as restarts
from podinfra.node.containerd import daemon
from podinfra.node.restart import Rollout

# --- facts: output in, value out ------------------------------------------------------------------------


def test_containerd_and_crio_versions():
    fact = facts.ContainerdVersion()
    assert (fact.requires_command(), fact.command()) == ("containerd", "containerd --version")
    assert fact.process(["containerd github.com/containerd/containerd/v2 2.1.9+unknown "]) == "2.1.9"
    assert facts.CrioVersion().process(["crio version 1.31.1", "Version:  v1.31.1"]) == "1.31.1"
    # CRI-O 1.36's `crio --version`: no Version: line (that is `crio version`'s), the release on the first line
    assert facts.CrioVersion().process(["crio version 1.36.3", "   GitCommit:      b24632ab44955fa8"]) == "1.36.3"
    assert facts.CrioVersion().process(["Version:        1.36.3", "GitCommit:  unknown"]) == "1.36.3"


def test_the_daemon_fact_runs_the_probe_and_parses_it():
    fact = facts.ContainerdDaemon()
    assert fact.command() == daemon.PROBE
    found = fact.process(["pid=9", "started=100 0 100", "config=/c.toml", "file=99 /c.toml", "--- dump", "version = 2"])
    assert (found.pid, found.config, found.changed_since_start(), found.dump) == (9, "/c.toml", [], "version = 2")


def test_image_facts():
    images = facts.ContainerdImages().process(
        [
            "REF TYPE DIGEST SIZE PLATFORMS LABELS",
            "registry.k8s.io/pause:3.10 x sha256:aa 299.0 KiB linux/amd64 io.cri-containerd.pinned=pinned",
        ]
    )
    assert images["registry.k8s.io/pause:3.10"].pinned
    used = facts.ContainerImages().process(["CONTAINER IMAGE RUNTIME", "abc registry.k8s.io/pause:3.9 runc"])
    assert used == {"registry.k8s.io/pause:3.9"}
    assert facts.ContainerdImages().default() == {} and facts.ContainerImages().default() == set()


def test_http_status_quotes_what_it_is_given():
    command = facts.HttpStatus().command(url="https://r:5000/v2/", cacert="/etc/a b.crt").get_raw_value()
    assert "--cacert '/etc/a b.crt'" in command and "https://r:5000/v2/ 2>/dev/null || true" in command
    assert facts.HttpStatus().process(["401"]) == "401"


# --- operations: facts in, commands out -------------------------------------------------------------------


@dataclass
class FakeHost:
    """What podinfra's operations ask of pyinfra's Host: facts (by class and arguments) and noop."""

    facts: dict[tuple[type, tuple[tuple[str, Any], ...]], Any]
    noops: list[str] = field(default_factory=list)
    name: str = "node1"
    print_prefix: str = "[node1] "

    def get_fact(self, cls: type, **kwargs: Any) -> Any:
        return self.facts.get((cls, tuple(sorted(kwargs.items()))))

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def log(self, message: str, log_func: Any) -> None:
        log_func(message)


def fact(cls: type, value: Any, **kwargs: Any) -> tuple[tuple[type, tuple[tuple[str, Any], ...]], Any]:
    return (cls, tuple(sorted(kwargs.items()))), value


@contextmanager
def on(fake: FakeHost, diff: bool = False, executing: bool = True):
    state = SimpleNamespace(config=SimpleNamespace(DIFF=diff), is_executing=executing)
    with ctx_host.use(fake), ctx_state.use(state):
        yield


def commands(op: Any, fake: FakeHost, **kwargs: Any) -> list[str]:
    with on(fake):
        out = []
        for command in op._inner(**kwargs):
            if isinstance(command, FileUploadCommand):
                out.append(f"upload {command.dest}")
            elif isinstance(command, FunctionCommand):
                out.append(f"function {command.function.__name__}")
            else:
                out.append(str(command.get_masked_value() if isinstance(command, StringCommand) else command))
        return out


PATH = "/etc/containerd/certs d/it's.toml"
CONTENT = "server = 'x'\n"
SHA = hashlib.sha256(CONTENT.encode()).hexdigest()


def test_config_file_with_the_content_in_place_is_a_noop():
    fake = FakeHost(
        dict([fact(Sha256File, SHA, path=PATH), fact(File, {"mode": 600, "user": "root", "group": "root"}, path=PATH)])
    )
    assert commands(operations.config_file, fake, path=PATH, content=CONTENT, mode="0600") == []
    assert fake.noops == [f"{PATH} is up to date"]


def test_config_file_fixes_owner_group_and_mode_alone():
    fake = FakeHost(
        dict([fact(Sha256File, SHA, path=PATH), fact(File, {"mode": 600, "user": "root", "group": "staff"}, path=PATH)])
    )
    quoted = "'/etc/containerd/certs d/it'\"'\"'s.toml'"
    assert commands(operations.config_file, fake, path=PATH, content=CONTENT, mode="0600") == [
        f"chown root:root {quoted} && chmod 0600 {quoted}"
    ]


def test_config_file_writes_atomically_with_a_backup_and_quotes_every_path():
    fake = FakeHost(dict([fact(Sha256File, None, path=PATH)]))
    found = commands(operations.config_file, fake, path=PATH, content=CONTENT, mode="0600")
    quoted, new = "'/etc/containerd/certs d/it'\"'\"'s.toml'", "'/etc/containerd/certs d/it'\"'\"'s.toml.podinfra-new'"
    backup = "'/etc/containerd/certs d/it'\"'\"'s.toml.podinfra-backup'"
    assert found == [
        "mkdir -p '/etc/containerd/certs d'",
        f"rm -f {new} && ( umask 077 && touch {new} )",
        f"upload {PATH}.podinfra-new",
        f"chown root:root {new} && chmod 0600 {new} && if [ -f {quoted} ]; then cp -p {quoted} "
        f"{backup} ; else rm -f {backup} ; fi && mv -f {new} {quoted}",
    ]


def test_config_file_diff_masks_secrets(caplog):
    fake = FakeHost(dict([fact(Sha256File, None, path="/h.toml"), fact(FileContents, None, path="/h.toml")]))
    caplog.set_level("INFO")
    with on(fake, diff=True):
        list(
            operations.config_file._inner(
                path="/h.toml", content='Authorization = "Basic c2VjcmV0"\n', secrets=["c2VjcmV0"]
            )
        )
    text = caplog.text
    assert "Will create /h.toml" in text and "Basic ***" in text and "c2VjcmV0" not in text


def test_pause_pinned_pulls_what_is_absent_and_labels_what_is_not_pinned():
    image = "registry.k8s.io/pause:3.10"
    absent = FakeHost(dict([fact(facts.ContainerdImages, {})]))
    assert commands(operations.pause_pinned, absent, image=image, certs_dir="/etc/containerd/certs.d") == [
        "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d registry.k8s.io/pause:3.10 >/dev/null",
        "ctr -n k8s.io images label registry.k8s.io/pause:3.10 io.cri-containerd.pinned=pinned",
    ]
    listed = facts.ContainerdImages().process(
        ["H", f"{image} x sha256:a 1 KiB linux/amd64 io.cri-containerd.pinned=pinned"]
    )
    pinned = FakeHost(dict([fact(facts.ContainerdImages, listed)]))
    assert commands(operations.pause_pinned, pinned, image=image, certs_dir="/c") == []
    assert pinned.noops == [f"{image} is present and pinned"]


def test_old_pause_released_only_once_no_container_uses_it():
    listed = facts.ContainerdImages().process(
        [
            "H",
            "registry.k8s.io/pause:3.9 x sha256:9 1 KiB linux/amd64 io.cri-containerd.pinned=pinned",
            "registry.k8s.io/pause:3.10 x sha256:a 1 KiB linux/amd64 io.cri-containerd.pinned=pinned",
            "registry.k8s.io/pause:3.10.2 x sha256:b 1 KiB linux/amd64 io.cri-containerd.pinned=pinned",
        ]
    )
    fake = FakeHost(
        dict([fact(facts.ContainerdImages, listed), fact(facts.ContainerImages, {"registry.k8s.io/pause:3.9"})])
    )
    assert commands(operations.old_pause_released, fake, image="registry.k8s.io/pause:3.10.2") == [
        "ctr -n k8s.io images label registry.k8s.io/pause:3.10 io.cri-containerd.pinned=",
    ]
    assert fake.noops == ["registry.k8s.io/pause:3.9 is still the pause of running sandboxes: kept"]
    removing = commands(operations.old_pause_released, fake, image="registry.k8s.io/pause:3.10.2", policy="remove")
    assert removing == ["ctr -n k8s.io images rm registry.k8s.io/pause:3.10 >/dev/null"]
    assert commands(operations.old_pause_released, fake, image="x/pause:1", policy="keep") == []


def running(changed: bool) -> daemon.Daemon:
    mtime = 2000 if changed else 1000
    dump = "version = 2\n[plugins.'io.containerd.grpc.v1.cri']\nsandbox_image = 'r/pause:3.10'\n"
    dump += "[plugins.'io.containerd.grpc.v1.cri'.registry]\nconfig_path = '/etc/containerd/certs.d'\n"
    return daemon.parse(
        ["pid=1", "started=1500 0 100", "config=/c", f"file={mtime} /c", "--- dump", *dump.splitlines()]
    )


def restart_commands(found: daemon.Daemon, image: str = "r/pause:3.10") -> tuple[list[str], FakeHost]:
    fake = FakeHost(dict([fact(facts.ContainerdDaemon, found)]))
    written = SimpleNamespace(will_change=False)
    out = commands(
        restarts.containerd_restarted, fake, image=image, config_path="/etc/containerd/certs.d",
        containerd_version="1.7.24", config="/c", written=written, rollout=Rollout(0, 1),
    )  # fmt: skip
    return out, fake


def test_containerd_restarts_when_a_file_it_reads_is_newer_than_the_daemon():
    assert restart_commands(running(changed=True))[0] == ["function _apply"]


def test_a_daemon_running_its_files_is_left_alone():
    out, fake = restart_commands(running(changed=False))
    assert out == [] and fake.noops == ["containerd runs its config (/c)"]


def test_an_effective_config_that_names_another_image_fails_the_node():
    assert restart_commands(running(changed=False), image="r/pause:3.10.1")[0] == ["function _fail"]


def test_wanted_names_what_differs():
    from podinfra.node.containerd.shape import runtime_shape

    wanted = restarts.Wanted("r/pause:3.10.1", "/etc/containerd/certs.d", runtime_shape("1.7.24"), 30)
    assert wanted.differences(running(changed=False)) == (
        "containerd's effective config (config dump) has "
        "plugins.\"io.containerd.grpc.v1.cri\".sandbox_image = 'r/pause:3.10', not 'r/pause:3.10.1'"
    )


# --- the rollout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fleet", "least", "nodes"),
    [
        (1, 150, 1, 1),
        ("10%", 150, 1, 15),  # Kubespray's serial: a share of the hosts, rounded down
        ("10%", 1000, 1, 100),
        ("10%", 9, 1, 1),  # at least one node per batch
        ("33.3%", 10, 1, 3),
        ("29%", 100, 1, 29),  # exact: 29/100 * 100 is not 28.999...
        ("100%", 7, 1, 7),
        ("5%", 10, 0, 0),  # max_failed_nodes may round to none
        ("5%", 200, 0, 10),
    ],
)
def test_a_share_of_the_fleet_is_a_number_of_nodes(value, fleet, least, nodes):
    assert of_fleet(value, fleet, least) == nodes


@pytest.mark.parametrize(
    ("value", "least", "valid"),
    [
        ("10%", 1, True),
        ("0%", 1, False),
        ("0%", 0, True),
        ("100%", 1, True),
        ("100.5%", 1, False),
        ("10", 1, False),
        (" 10%", 1, False),
        (True, 1, False),
        (0, 1, False),
        (0, 0, True),
        (3, 1, True),
    ],
)
def test_restart_batch_and_max_failed_nodes_take_a_count_or_a_share(value, least, valid):
    assert count_or_share(least)(value) is valid


def test_a_share_batch_cuts_the_runs_hosts_as_pyinfra_does():
    """restart_batch "25%" over 8 hosts is batches of 2 (pyinfra's _parallel=2), max_failed_nodes "25%" allows 2."""
    inventory = Inventory(([f"h{i}" for i in range(8)], {}))  # type: ignore[no-untyped-call]
    state = State(inventory, Config())  # type: ignore[no-untyped-call]
    for host in inventory:
        state.activate_host(host)
    fleet = len(state.inventory.get_active_hosts())
    rollout = Rollout(of_fleet("25%", fleet, 0), of_fleet("25%", fleet, 1))
    assert (rollout.allowed, rollout.batch) == (2, 2)
    assert [rollout.batch_of(state, h) for h in state.inventory.get_active_hosts()] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_a_host_is_stopped_by_failures_in_earlier_batches_only():
    inventory = Inventory((["a", "b", "c", "d"], {}))  # type: ignore[no-untyped-call]
    state = State(inventory, Config())  # type: ignore[no-untyped-call]
    for host in inventory:
        state.activate_host(host)
    rollout = Rollout(allowed=0, batch=2)
    order = [h.name for h in state.inventory.get_active_hosts()]
    first, second = order[:2], order[2:]
    rollout.failed[first[0]] = 0
    assert rollout.stopped(state, inventory.get_host(first[1])) == 0  # a peer of its own batch: not stopped
    assert rollout.stopped(state, inventory.get_host(second[0])) == 1
    assert Rollout(allowed=1, batch=2).stopped(state, inventory.get_host(second[0])) == 0


def test_failed_fails_the_host_with_its_one_line(caplog):
    fake = FakeHost({})
    assert commands(operations.failed, fake, reason="config.toml is version 5") == ["function _fail"]
    with on(fake):
        assert operations._fail(None, fake, "config.toml is version 5") is False  # type: ignore[arg-type]
    assert "[node1] config.toml is version 5" in caplog.text


def test_an_image_the_registry_holds_is_not_copied_again_and_a_missing_one_is(upstream, registry):
    from podinfra.data.settings import MirrorSettings
    from podinfra.images.reference import parse

    mirror = MirrorSettings((), upstream.host, True, None, "")
    pause = parse("registry.k8s.io/pause:3.10")
    fake = FakeHost({})
    assert commands(operations.image_mirrored, fake, image=pause, mirror=mirror, dest=registry) == ["function _copy"]
    with on(fake):
        source = operations.registry_source(pause, upstream.host, True)
        assert operations._copy(None, fake, source, pause, registry, "pause")  # type: ignore[arg-type]
    assert commands(operations.image_mirrored, fake, image=pause, mirror=mirror, dest=registry) == []
    assert fake.noops[-1].endswith(f"pause:3.10 already is {registry.manifest_digest('pause', '3.10')}")
    absent = parse("registry.k8s.io/pause:0.0")
    assert commands(operations.image_mirrored, fake, image=absent, mirror=mirror, dest=registry) == ["function _fail"]


def test_the_probe_image_is_pushed_once(registry):
    from podinfra.data.settings import MirrorSettings
    from podinfra.images.probe_image import build

    image, fake = build(), FakeHost({})
    mirror = MirrorSettings((), "registry.k8s.io", False, None, "")
    assert commands(operations.probe_image_pushed, fake, image=image, mirror=mirror, dest=registry) == [
        "function _push_probe"
    ]
    with on(fake):
        assert operations._push_probe(None, fake, image, registry, "podinfra/probe")  # type: ignore[arg-type]
    assert commands(operations.probe_image_pushed, fake, image=image, mirror=mirror, dest=registry) == []


# --- the restart and its rollback -------------------------------------------------------------------------


@dataclass
class ShellHost(FakeHost):
    """A host whose shell commands answer in turn from `answers` (ok, stdout lines), recorded in `ran`."""

    answers: list[tuple[bool, list[str]]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def run_shell_command(self, command: StringCommand, print_output: bool = False) -> tuple[bool, Any]:
        self.ran.append(command.get_raw_value())
        ok, lines = self.answers.pop(0)
        return ok, SimpleNamespace(stdout_lines=lines)


def restart(fake: ShellHost, wrote: bool, rollout: Rollout | None = None) -> tuple[bool, Rollout]:
    from podinfra.node.containerd.shape import runtime_shape

    rollout = rollout or Rollout(allowed=0, batch=1)
    wanted = restarts.Wanted("r/pause:3.10", "/etc/containerd/certs.d", runtime_shape("1.7.24"), 30)
    state = SimpleNamespace(inventory=SimpleNamespace(get_active_hosts=lambda: [SimpleNamespace(name="node0"), fake]))
    script = restarts.CONTAINERD_RESTART.format(wait=30)
    service = restarts.Service(
        "containerd", "containerd", {"restart": script, "back": script}, 30, wanted.verify, "with its CRI plugin"
    )
    meta = SimpleNamespace(did_change=lambda: wrote)
    written = [restarts.Written(meta, "/c", "/c.podinfra-backup")]  # type: ignore[arg-type]
    why = "/c changed after containerd started"
    ok = restarts._apply(state, fake, rollout, service, "restart", written, why)  # type: ignore[arg-type]
    return ok, rollout


RESTORE = "if [ -f /c.podinfra-backup ]; then cp -p /c.podinfra-backup /c ; else rm -f /c ; fi"


def test_a_restart_that_fails_puts_the_old_config_back_restarts_and_fails_the_node_by_name(caplog):
    fake = ShellHost({}, answers=[(False, []), (True, []), (True, [])])
    ok, rollout = restart(fake, wrote=True)
    assert not ok
    assert [command.split("\n")[0] for command in fake.ran] == [
        "systemctl restart containerd || exit 1",  # the new config: containerd does not come back
        RESTORE,
        "systemctl restart containerd || exit 1",  # the old one, restarted
    ]
    assert rollout.failed == {"node1": 1}, "counted in its batch, for the later batches"
    assert "[node1] containerd did not come back with its CRI plugin within 30s" in caplog.text
    assert "previous config restored, containerd restarted" in caplog.text
    assert "did not come back either" not in caplog.text


def test_a_restart_whose_effective_config_is_wrong_is_rolled_back_too(caplog):
    dump = ["pid=1", "started=1500 0 100", "config=/c", "file=1000 /c", "--- dump", "version = 2"]
    fake = ShellHost({}, answers=[(True, []), (True, dump), (True, []), (False, [])])
    assert not restart(fake, wrote=True)[0]
    assert fake.ran[2] == RESTORE
    assert "[node1] containerd's effective config (config dump) has" in caplog.text
    assert "and it did not come back either (journalctl -u containerd)" in caplog.text


def test_a_failed_restart_after_someone_elses_edit_is_left_to_the_operator(caplog):
    fake = ShellHost({}, answers=[(False, [])])
    assert not restart(fake, wrote=False)[0]
    assert len(fake.ran) == 1 and RESTORE not in fake.ran
    assert "not by podinfra in this run: fix it by hand" in caplog.text


def test_after_failures_in_earlier_batches_the_node_keeps_its_old_config_unrestarted(caplog):
    earlier = Rollout(allowed=0, batch=1, failed={"node0": 0})
    fake = ShellHost({}, answers=[(True, [])])
    assert not restart(fake, wrote=True, rollout=earlier)[0]
    assert fake.ran == [RESTORE]
    assert "rollout stopped after 1 failed node(s) in earlier batches" in caplog.text
