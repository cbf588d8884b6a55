import pytest

from podinfra.lab import state
from podinfra.lab.state import LabConfig, LabError, LabState, NodeState


def test_hosts_are_addressed_registry_first_then_nodes():
    config = LabConfig(nodes=3, subnet="10.213.0.0/24")
    assert config.gateway == "10.213.0.1"
    assert config.hosts() == [
        ("registry", "registry", "10.213.0.2", "1.6"),
        ("node1", "nodes", "10.213.0.11", "1.6"),
        ("node2", "nodes", "10.213.0.12", "1.7"),
        ("node3", "nodes", "10.213.0.13", "2.1"),
    ]


def test_runtimes_are_given_to_nodes_in_turn():
    config = LabConfig(nodes=3, runtimes=("2.1", "cri-o"))
    assert [runtime for *_, runtime in config.hosts()] == ["1.6", "2.1", "cri-o", "2.1"]


def test_bridge_name_fits_the_kernel_limit():
    assert len(LabConfig(name="abcdefghij").bridge) <= 15


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"name": "my-lab"}, "letters or digits"),
        ({"subnet": "10.0.0.0/28"}, "/24 or larger"),
        ({"subnet": "fd00::/64"}, "IPv4"),
        ({"nodes": 0}, "holds 1 to 244"),
        ({"nodes": 500}, "holds 1 to 244"),
        ({"runtimes": ("1.5",)}, "runs containerd 1.6, 1.7, 2.1, 2.2, 2.3 and cri-o"),
        ({"runtimes": ()}, "runs containerd 1.6, 1.7, 2.1, 2.2, 2.3 and cri-o"),
    ],
)
def test_bad_lab_shapes_name_the_fix(kwargs, fix):
    with pytest.raises(LabError, match=fix):
        LabConfig(**kwargs)


def test_state_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_ROOT", tmp_path)
    saved = LabState(
        LabConfig(name="t1", nodes=2, runtimes=("2.1", "cri-o")),
        [
            NodeState("node1", "nodes", "10.213.0.11", 42, "10.244.1.0/24", "2.1", "2.1.9+unknown"),
            NodeState("node2", "nodes", "10.213.0.12", 43, "10.244.2.0/24", "cri-o", "1.36.3"),
        ],
        7,
    )
    saved.save()
    assert LabState.load("t1") == saved
    crio = saved.nodes[1]
    assert (crio.runtime_name, crio.service, crio.containerd) == ("cri-o", "crio", None)
    assert (saved.nodes[0].runtime_name, saved.nodes[0].service, saved.nodes[0].containerd) == (
        "containerd",
        "containerd",
        "2.1",
    )


def test_a_state_file_of_another_version_names_lab_down(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_ROOT", tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old/state.json").write_text(
        '{"config": {"name": "old", "containerd": ["1.6"]}, "nodes": [], "upstream_pid": 1}'
    )
    with pytest.raises(LabError, match="podinfra lab down --name old"):
        LabState.load("old")
    from podinfra.lab import lifecycle

    monkeypatch.setattr(lifecycle, "_check_host", lambda: None)
    with pytest.raises(LabError, match="podinfra lab down --name old"):
        lifecycle.up(LabConfig(name="old"))  # not booted beside the nodes that file names


def test_missing_lab_says_how_to_start_it(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_ROOT", tmp_path)
    with pytest.raises(LabError, match="run `podinfra lab up --name nope`"):
        LabState.load("nope")
    with pytest.raises(LabError, match="run `podinfra lab up`$"):
        LabState.load("lab")


def test_a_reused_pid_is_not_the_lab_process():
    import os

    assert state.pid_alive(os.getpid(), "python")
    assert not state.pid_alive(os.getpid(), "/var/lib/podinfra/not-this")
    assert not state.pid_alive(None, "x")
