"""podinfra.runtime_config: rendered and edited runtime files, parsed back and compared with golden files.

Golden files in tests/unit/golden/ were reviewed by hand against the runtimes' documentation;
``PODINFRA_UPDATE_GOLDEN=1 pytest tests/unit/test_runtime_config.py`` rewrites them (review the diff).
The containerd 1.6 files are also fed to the real ``containerd config dump`` installed by ./run.
"""

from __future__ import annotations

import copy
import difflib
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from podinfra import runtime_config as rc
from podinfra.runtime_config import ConfigError

GOLDEN = Path(__file__).parent / "golden"
IMAGE = "10.213.0.2:5000/pause:3.10"
CERTS = "/etc/containerd/certs.d"
V2_SANDBOX = ("plugins", "io.containerd.grpc.v1.cri", "sandbox_image")
V2_CONFIG_PATH = ("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")
V3_SANDBOX = ("plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox")
V3_CONFIG_PATH = ("plugins", "io.containerd.cri.v1.images", "registry", "config_path")

# What an operator's containerd 1.6/1.7 node carries: systemd cgroups, a second runtime, CNI dirs, comments.
OPERATOR_V2 = """\
# /etc/containerd/config.toml - platform team, ticket OPS-1234
version = 2
imports = ["/etc/containerd/conf.d/*.toml"]
oom_score = -999

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    # This VM refuses a negative oom_score_adj.
    restrict_oom_score_adj = true
    # sandbox_image is the image used by sandbox container.
    sandbox_image = "registry.k8s.io/pause:3.6"  # containerd 1.6 default
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true

        # gVisor for untrusted workloads (RuntimeClass "gvisor")
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor]
          runtime_type = "io.containerd.runsc.v1"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.configs]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
"""

# The same node on containerd 2.x, in the quoting `containerd config default` uses there.
OPERATOR_V3 = """\
# /etc/containerd/config.toml for containerd 2.x - platform team
version = 3
root = '/var/lib/containerd'
imports = ['/etc/containerd/conf.d/*.toml']

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    max_concurrent_downloads = 3

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      # the distribution's default, replaced by podinfra
      sandbox = 'registry.k8s.io/pause:3.10'

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ''

  [plugins.'io.containerd.cri.v1.runtime']
    # This VM refuses a negative oom_score_adj.
    restrict_oom_score_adj = true

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = true  # kubelet cgroupDriver: systemd

      # Kata Containers for RuntimeClass "kata"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]
        runtime_type = 'io.containerd.kata.v2'

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dir = '/opt/cni/bin'
      conf_dir = '/etc/cni/net.d'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
"""
OPERATOR_V4 = OPERATOR_V3.replace("version = 3", "version = 4")

# (containerd version, config version, sandbox key path, config_path key path, operator file)
SHAPES = [
    ("1.6.20", 2, V2_SANDBOX, V2_CONFIG_PATH, OPERATOR_V2),
    ("1.7.27", 2, V2_SANDBOX, V2_CONFIG_PATH, OPERATOR_V2),
    ("2.0.4", 3, V3_SANDBOX, V3_CONFIG_PATH, OPERATOR_V3),
    ("2.1.4", 3, V3_SANDBOX, V3_CONFIG_PATH, OPERATOR_V3),
    ("2.2.0", 3, V3_SANDBOX, V3_CONFIG_PATH, OPERATOR_V3),
    ("2.3.1", 4, V3_SANDBOX, V3_CONFIG_PATH, OPERATOR_V4),
    ("2.4.0", 4, V3_SANDBOX, V3_CONFIG_PATH, OPERATOR_V4),
]
SHAPE_IDS = [shape[0] for shape in SHAPES]

KUBEADM_FLAGS = """\
# written by kubeadm init
KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock \
--pod-infra-container-image registry.k8s.io/pause:3.9 --node-ip=10.213.0.11"
"""


def golden(name: str, text: str) -> None:
    """Compare with tests/unit/golden/NAME byte for byte; PODINFRA_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("PODINFRA_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text.encode())
    assert path.exists(), f"{path} missing: run with PODINFRA_UPDATE_GOLDEN=1 and review it"
    expected = path.read_bytes().decode()
    assert text == expected, "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True)))


def at(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def assert_only_keys_changed(before: str, after: str, keys: tuple[str, ...]) -> None:
    """Every line of ``before`` is still in ``after``, in order, except lines setting one of ``keys``."""
    removed = [line[2:] for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("- ")]
    assert all(line.split("=")[0].strip() in keys for line in removed), removed


# --- containerd config.toml -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n", "1.6.20"),
        ("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", "1.7.27"),
        ("containerd github.com/containerd/containerd/v2 v2.0.4 1a43cb6a1035441f9aca8f5666a9b3ef9e70ab20\n", "2.0.4"),
        ('level=warning msg="deprecated"\ncontainerd github.com/containerd/containerd v1.7.3 7880925\n', "1.7.3"),
    ],
)
def test_containerd_version_from_output(output, version):
    assert rc.containerd_version_from_output(output) == version


def test_containerd_version_from_output_refuses_other_text():
    with pytest.raises(ConfigError, match="is containerd installed"):
        rc.containerd_version_from_output("bash: containerd: command not found")


@pytest.mark.parametrize(("containerd", "config_version", "sandbox", "config_path", "_"), SHAPES, ids=SHAPE_IDS)
def test_shape_per_release(containerd, config_version, sandbox, config_path, _):
    shape = rc.containerd_shape(containerd)
    assert (shape.config_version, shape.sandbox_path, shape.config_path_path) == (config_version, sandbox, config_path)
    assert rc.containerd_shape(f"v{containerd}~ds1") == shape


@pytest.mark.parametrize("bad", ["1.5.9", "1.4", "3.0.0", "0.2"])
def test_unknown_containerd_names_the_supported_range(bad):
    with pytest.raises(ConfigError, match="knows containerd 1.6 to 2.x"):
        rc.containerd_shape(bad)


@pytest.mark.parametrize("bad", ["latest", "", "1"])
def test_malformed_containerd_version(bad):
    with pytest.raises(ConfigError, match="not a containerd version"):
        rc.containerd_shape(bad)


@pytest.mark.parametrize(("containerd", "config_version", "sandbox", "config_path", "_"), SHAPES, ids=SHAPE_IDS)
def test_render_from_nothing_holds_only_the_two_keys(containerd, config_version, sandbox, config_path, _):
    text = rc.edit_containerd_config(None, containerd, IMAGE)
    expected: dict[str, Any] = {"version": config_version}
    put(expected, sandbox, IMAGE)
    put(expected, config_path, CERTS)
    assert tomllib.loads(text) == expected
    assert "{" not in text, "tables are written as [table] headers"
    assert rc.edit_containerd_config(" \n", containerd, IMAGE) == text
    assert rc.edit_containerd_config(text, containerd, IMAGE) == text
    golden(f"containerd-{containerd}-new.toml", text)


@pytest.mark.parametrize(("containerd", "_", "sandbox", "config_path", "operator"), SHAPES, ids=SHAPE_IDS)
def test_operator_file_keeps_everything_but_the_two_keys(containerd, _, sandbox, config_path, operator):
    text = rc.edit_containerd_config(operator, containerd, IMAGE)
    expected = copy.deepcopy(tomllib.loads(operator))
    put(expected, sandbox, IMAGE)
    put(expected, config_path, CERTS)
    parsed = tomllib.loads(text)
    assert parsed == expected
    runtime = "io.containerd.grpc.v1.cri" if sandbox == V2_SANDBOX else "io.containerd.cri.v1.runtime"
    runtimes = parsed["plugins"][runtime]["containerd"]["runtimes"]
    assert runtimes["runc"]["options"]["SystemdCgroup"] is True
    assert len(runtimes) == 2
    assert parsed["plugins"][runtime]["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}
    assert parsed["plugins"][runtime]["restrict_oom_score_adj"] is True
    assert parsed["imports"] == ["/etc/containerd/conf.d/*.toml"]
    comments = [line for line in operator.splitlines() if "#" in line and "sandbox" not in line]
    assert all(line in text.splitlines() for line in comments)
    assert_only_keys_changed(operator, text, (sandbox[-1], config_path[-1]))
    golden(f"containerd-{containerd}-operator.toml", text)


@pytest.mark.parametrize(("containerd", "_", "sandbox", "config_path", "operator"), SHAPES, ids=SHAPE_IDS)
def test_edit_is_idempotent(containerd, _, sandbox, config_path, operator):
    once = rc.edit_containerd_config(operator, containerd, IMAGE)
    assert rc.edit_containerd_config(once, containerd, IMAGE) == once
    other = rc.edit_containerd_config(once, containerd, "10.213.0.2:5000/pause:3.10.1", "/etc/podinfra/certs.d")
    assert at(tomllib.loads(other), sandbox) == "10.213.0.2:5000/pause:3.10.1"
    assert at(tomllib.loads(other), config_path) == "/etc/podinfra/certs.d"
    assert rc.edit_containerd_config(other, containerd, IMAGE) == once


def test_missing_tables_are_created_as_headers_in_the_file_style():
    text = rc.edit_containerd_config(
        "version = 3\n# kubeadm\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
        "  SystemdCgroup = true\n",
        "2.1.0",
        IMAGE,
    )
    assert text.endswith(
        "  SystemdCgroup = true\n"
        "\n"
        '[plugins."io.containerd.cri.v1.images".pinned_images]\n'
        f'  sandbox = "{IMAGE}"\n'
        "\n"
        '[plugins."io.containerd.cri.v1.images".registry]\n'
        f'  config_path = "{CERTS}"\n'
    )


def test_value_replaced_in_place_keeps_quotes_and_comment():
    text = rc.edit_containerd_config(OPERATOR_V3, "2.0.0", IMAGE)
    assert f"      sandbox = '{IMAGE}'\n" in text
    v2 = rc.edit_containerd_config(OPERATOR_V2, "1.6.20", IMAGE)
    assert f'    sandbox_image = "{IMAGE}"  # containerd 1.6 default\n' in v2


def test_layout_tomlkit_would_reindent_is_kept_byte_for_byte():
    # tomlkit 0.13 adds indentation to the second header here on every parse; the edit must not.
    operator = (
        "version = 2\n"
        '  [plugins."io.containerd.grpc.v1.cri".cni]\n'
        '    bin_dir = "/opt/cni/bin"\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry]\n'
        '    config_path = ""\n'
    )
    text = rc.edit_containerd_config(operator, "1.7.0", IMAGE)
    assert '\n  [plugins."io.containerd.grpc.v1.cri".registry]\n' in text
    assert_only_keys_changed(operator, text, ("config_path",))
    assert rc.edit_containerd_config(text, "1.7.0", IMAGE) == text


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            'version = 2\n[plugins]\n"io.containerd.grpc.v1.cri".sandbox_image = "x"\n'
            '"io.containerd.grpc.v1.cri".registry.config_path = ""\n',
            "dotted keys",
        ),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = { config_path = "" }\n', "inline table"),
        ('version = 2\r\n[plugins."io.containerd.grpc.v1.cri"]\r\n  sandbox_image = "x"\r\n', "CRLF"),
        ("version = 2\n[plugins.'io.containerd.internal.v1.opt']\n  path = '/opt/containerd'", "no final newline"),
    ],
)
def test_unusual_but_valid_files(text, where):
    out = rc.edit_containerd_config(text, "1.6.20", IMAGE)
    parsed = tomllib.loads(out)
    assert (at(parsed, V2_SANDBOX), at(parsed, V2_CONFIG_PATH)) == (IMAGE, CERTS), where
    assert rc.edit_containerd_config(out, "1.6.20", IMAGE) == out, where
    if "\r\n" in text:
        assert "\n" not in out.replace("\r\n", "")


DOTTED_SANDBOX_ONLY = 'version = 2\n[plugins]\n"io.containerd.grpc.v1.cri".sandbox_image = ""\n'


def test_a_table_tomlkit_cannot_add_is_refused_not_misplaced():
    # tomlkit 0.13 writes a table added under dotted keys with a wrong header; the result is checked, not trusted.
    with pytest.raises(ConfigError, match=r"could not set plugins\.\"io\.containerd\.grpc\.v1\.cri\"\.registry"):
        rc.edit_containerd_config(DOTTED_SANDBOX_ONLY, "1.6", IMAGE)


@pytest.mark.parametrize(
    ("text", "containerd", "message"),
    [
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n', "2.0.0", "containerd config migrate > /tmp/config"),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n', "2.3.0", "containerd config migrate > /tmp/config"),
        ('[plugins.cri]\nsandbox_image = "x"\n', "1.6.20", "add `version = 2`"),
        ('[plugins.cri]\nsandbox_image = "x"\n', "1.7.0", "add `version = 2`"),
        ('[plugins.cri]\nsandbox_image = "x"\n', "2.1.0", "is version 1 .*containerd config migrate"),
        ("# only comments\n", "2.2.0", "is version 1 .*containerd config migrate"),
        ("version = 1\n", "1.6.20", "add `version = 2`"),
        ("version = 3\n", "1.7.27", "reads up to version 2"),
        ("version = 4\n", "2.2.0", "reads up to version 3"),
        ("version = 5\n", "2.4.0", "reads up to version 4"),
        ('version = "2"\n', "1.6.20", "must be an integer"),
    ],
)
def test_version_mismatch_names_the_fix(text, containerd, message):
    with pytest.raises(ConfigError, match=message):
        rc.edit_containerd_config(text, containerd, IMAGE)


def test_version_3_file_on_containerd_2_3_is_edited_as_it_is():
    # containerd 2.3 reads version 3 files unchanged and keeps the CRI keys where version 3 has them.
    text = rc.edit_containerd_config(OPERATOR_V3, "2.3.1", IMAGE)
    assert text == rc.edit_containerd_config(OPERATOR_V3, "2.2.0", IMAGE)
    assert tomllib.loads(text)["version"] == 3


STALE_V3 = """\
version = 3
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  sandbox_image = "registry.k8s.io/pause:3.8"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
      endpoint = ["https://mirror.example"]

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'registry.k8s.io/pause:3.10'
"""


@pytest.mark.parametrize("containerd", ["2.0.0", "2.3.0"])
def test_stale_1x_keys_in_a_version_3_file_are_listed_and_removed(containerd):
    assert rc.stale_keys(STALE_V3, containerd) == [
        'plugins."io.containerd.grpc.v1.cri".sandbox_image',
        'plugins."io.containerd.grpc.v1.cri".registry.config_path',
        'plugins."io.containerd.grpc.v1.cri".registry.mirrors',
    ]
    text = rc.edit_containerd_config(STALE_V3, containerd, IMAGE)
    parsed = tomllib.loads(text)
    assert parsed["plugins"]["io.containerd.grpc.v1.cri"] == {"stream_server_address": "127.0.0.1"}
    assert (at(parsed, V3_SANDBOX), at(parsed, V3_CONFIG_PATH)) == (IMAGE, CERTS)
    assert "mirror.example" not in text and "pause:3.8" not in text
    assert rc.stale_keys(text, containerd) == []
    assert rc.edit_containerd_config(text, containerd, IMAGE) == text


def test_stale_keys_only_concern_version_3_files():
    assert rc.stale_keys(OPERATOR_V2, "1.6.20") == []
    assert rc.stale_keys(OPERATOR_V3, "2.0.0") == []
    assert rc.stale_keys(STALE_V3, "1.7.0") == []
    assert rc.stale_keys("", "2.0.0") == []


@pytest.mark.parametrize(
    ("text", "containerd", "message"),
    [
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\nendpoint = ["x"]\n',
            "1.6.20",
            "mirrors, which containerd rejects together with config_path",
        ),
        (
            "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\nendpoint = ['x']\n",
            "2.0.0",
            "mirrors, which containerd rejects together with config_path",
        ),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."r.example".tls]\nca_file = "x"\n',
            "1.7.0",
            r"configs\.\*\.tls",
        ),
        ('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n', "1.6.20", "disables the CRI plugin"),
        ("version = 3\ndisabled_plugins = ['io.containerd.cri.v1.images']\n", "2.1.0", "disables the CRI plugin"),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = "x"\n', "1.6.20", "expects a table"),
        ("version = [\n", "1.6.20", "not valid TOML"),
    ],
)
def test_files_containerd_would_reject_are_refused(text, containerd, message):
    with pytest.raises(ConfigError, match=message):
        rc.edit_containerd_config(text, containerd, IMAGE)


@pytest.mark.parametrize(
    ("image", "config_path", "message"),
    [
        ("https://10.0.0.2:5000/pause:3.10", CERTS, "not an image reference"),
        ("10.0.0.2:5000/Pause:3.10", CERTS, "lowercase"),
        (IMAGE, "etc/containerd/certs.d", "one absolute directory"),
        (IMAGE, "/etc/containerd/certs.d:/etc/docker/certs.d", "one absolute directory"),
    ],
)
def test_bad_settings_are_refused(image, config_path, message):
    with pytest.raises(ConfigError, match=message):
        rc.edit_containerd_config(None, "1.6.20", image, config_path)


# --- the real containerd 1.6 on this host ------------------------------------------------------------------


def containerd_dump(tmp_path: Path, text: str) -> dict[str, Any]:
    """``containerd --config FILE config dump``: the effective merged config; it reads the file and starts nothing."""
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = subprocess.run(
        ["containerd", "--config", str(config), "config", "dump"], capture_output=True, text=True, check=True
    )
    return tomllib.loads(result.stdout)


def test_installed_containerd_is_the_version_2_shape():
    output = subprocess.run(["containerd", "--version"], capture_output=True, text=True, check=True).stdout
    version = rc.containerd_version_from_output(output)
    assert version.startswith("1.6.")
    assert rc.containerd_shape(version).config_version == 2


@pytest.mark.parametrize("existing", [None, OPERATOR_V2], ids=["new", "operator"])
def test_real_containerd_reads_the_v2_files(tmp_path, existing):
    if existing is not None:  # keep the dump hermetic: imports would read this host's /etc/containerd/conf.d
        existing = existing.replace("/etc/containerd/conf.d", str(tmp_path / "conf.d"))
    dump = containerd_dump(tmp_path, rc.edit_containerd_config(existing, "1.6.20", IMAGE))
    assert dump["version"] == 2
    assert at(dump, V2_SANDBOX) == IMAGE
    assert at(dump, V2_CONFIG_PATH) == CERTS
    if existing is not None:
        cri = dump["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
        assert cri["containerd"]["runtimes"]["gvisor"]["runtime_type"] == "io.containerd.runsc.v1"
        assert (cri["cni"]["bin_dir"], cri["cni"]["conf_dir"]) == ("/opt/cni/bin", "/etc/cni/net.d")
        assert cri["restrict_oom_score_adj"] is True


def test_real_containerd_1x_import_replaces_the_whole_plugin_table(tmp_path):
    # Why runtime_config edits the main file: a 1.x drop-in naming the CRI plugin resets everything else in it.
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-log.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  max_container_log_line_size = 1\n'
    )
    main = rc.edit_containerd_config(OPERATOR_V2, "1.6.20", IMAGE)
    cri = containerd_dump(tmp_path, main.replace("/etc/containerd/conf.d", str(tmp_path / "conf.d")))["plugins"][
        "io.containerd.grpc.v1.cri"
    ]
    assert cri["max_container_log_line_size"] == 1
    assert cri["sandbox_image"] != IMAGE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


# --- hosts.toml -----------------------------------------------------------------------------------------


def test_hosts_toml_points_only_at_the_mirror():
    text = rc.hosts_toml("registry.k8s.io", "https://10.213.0.2:5000", "/etc/containerd/certs.d/podinfra-ca.crt")
    parsed = tomllib.loads(text)
    mirror = "https://10.213.0.2:5000"
    assert parsed == {
        "server": mirror,
        "capabilities": ["pull", "resolve"],
        "ca": "/etc/containerd/certs.d/podinfra-ca.crt",
        "host": {mirror: {"capabilities": ["pull", "resolve"], "ca": "/etc/containerd/certs.d/podinfra-ca.crt"}},
    }
    assert "registry.k8s.io" not in text.split("\n", 1)[1], "the upstream appears in the comment only"
    golden("hosts-ca.toml", text)


def test_hosts_toml_with_override_path_and_authorization():
    text = rc.hosts_toml(
        "registry.k8s.io", "https://10.213.0.2:5000/", "/etc/podinfra/ca.crt", "Basic cG9kaW5mcmE6c2VjcmV0", "v2/mirror"
    )
    parsed = tomllib.loads(text)
    root = "https://10.213.0.2:5000/v2/mirror"
    settings = {
        "capabilities": ["pull", "resolve"],
        "ca": "/etc/podinfra/ca.crt",
        "override_path": True,
        "header": {"Authorization": "Basic cG9kaW5mcmE6c2VjcmV0"},
    }
    assert parsed == {"server": root, **settings, "host": {root: settings}}
    golden("hosts-override-auth.toml", text)


def test_hosts_toml_plain_http_mirror():
    parsed = tomllib.loads(rc.hosts_toml("localhost:5100", "http://10.213.0.2:5000", None))
    assert parsed == {
        "server": "http://10.213.0.2:5000",
        "capabilities": ["pull", "resolve"],
        "host": {"http://10.213.0.2:5000": {"capabilities": ["pull", "resolve"]}},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("registry.k8s.io", "10.213.0.2:5000", None), "https:// or http:// URL"),
        (("registry.k8s.io", "ftp://10.213.0.2", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://user:pw@10.213.0.2", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://10.213.0.2:5000?x=1", None), "https:// or http:// URL"),
        (("registry.k8s.io", "https://bad host", None), "not a registry host"),
        (("registry.k8s.io", "http://10.213.0.2:5000", "/ca.crt"), "plain-HTTP"),
        (("registry.k8s.io/pause", "https://10.213.0.2:5000", None), "host\\[:port\\] only"),
        (("registry.k8s.io", "https://10.213.0.2:5000", None, "Basic a\nb"), "on one line"),
        (("registry.k8s.io", "https://10.213.0.2:5000/v2/x", None, None, "/v2/y"), "has a path"),
        (("registry.k8s.io", "https://10.213.0.2:5000", None, None, "/"), "API root path"),
    ],
)
def test_hosts_toml_refuses_bad_input(args, message):
    with pytest.raises(ConfigError, match=message):
        rc.hosts_toml(*args)


# --- CRI-O ----------------------------------------------------------------------------------------------


def test_crio_dropin():
    text = rc.crio_dropin(IMAGE)
    assert tomllib.loads(text) == {"crio": {"image": {"pause_image": IMAGE, "pinned_images": [IMAGE]}}}
    golden("crio-10-podinfra-pause.conf", text)


def test_crio_dropin_carries_the_node_pins():
    text = rc.crio_dropin(IMAGE, ["quay.io/calico/node:*", IMAGE])
    assert tomllib.loads(text)["crio"]["image"]["pinned_images"] == [IMAGE, "quay.io/calico/node:*"]
    with pytest.raises(ConfigError, match="not an image reference"):
        rc.crio_dropin("docker://pause")


def test_crio_registries_conf():
    text = rc.crio_registries_conf("registry.k8s.io", "10.213.0.2:5000/mirror")
    assert tomllib.loads(text) == {
        "registry": [
            {
                "prefix": "registry.k8s.io",
                "location": "10.213.0.2:5000/mirror",
                "mirror": [{"location": "10.213.0.2:5000/mirror"}],
            }
        ]
    }
    golden("crio-10-podinfra-mirror.conf", text)


def test_crio_registries_conf_insecure():
    text = rc.crio_registries_conf("registry.k8s.io", "10.213.0.2:5000", insecure=True)
    assert tomllib.loads(text)["registry"] == [
        {
            "prefix": "registry.k8s.io",
            "location": "10.213.0.2:5000",
            "insecure": True,
            "mirror": [{"location": "10.213.0.2:5000", "insecure": True}],
        }
    ]
    golden("crio-10-podinfra-mirror-insecure.conf", text)


@pytest.mark.parametrize(
    ("upstream", "mirror"),
    [("registry.k8s.io", "https://10.213.0.2:5000"), ("https://registry.k8s.io", "10.213.0.2:5000")],
)
def test_crio_registries_conf_refuses_schemes(upstream, mirror):
    with pytest.raises(ConfigError, match="without a scheme"):
        rc.crio_registries_conf(upstream, mirror)


# --- kubelet --------------------------------------------------------------------------------------------


def test_kubelet_flags_1_34_replaces_the_flag_in_place():
    text = rc.kubelet_flags(KUBEADM_FLAGS, "1.34", IMAGE)
    assert text == (
        "# written by kubeadm init\n"
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
        f'--pod-infra-container-image={IMAGE} --node-ip=10.213.0.11"\n'
    )
    assert rc.kubelet_flags(text, "1.34.2", IMAGE) == text
    golden("kubelet-1.34-kubeadm-flags.env", text)


def test_kubelet_flags_1_35_removes_the_flag():
    text = rc.kubelet_flags(KUBEADM_FLAGS, "1.35", IMAGE)
    assert text == (
        "# written by kubeadm init\n"
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
        '--node-ip=10.213.0.11"\n'
    )
    assert rc.kubelet_flags(text, "v1.36.0", IMAGE) == text
    golden("kubelet-1.35-kubeadm-flags.env", text)


@pytest.mark.parametrize(
    ("existing", "v134", "v135"),
    [
        (
            'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=registry.k8s.io/pause:3.9 --node-ip=10.0.0.1"\n',
            f'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image={IMAGE} --node-ip=10.0.0.1"\n',
            'KUBELET_KUBEADM_ARGS="--v=2 --node-ip=10.0.0.1"\n',
        ),
        (
            "KUBELET_KUBEADM_ARGS='--pod-infra-container-image registry.k8s.io/pause:3.9 --v=2'",
            f"KUBELET_KUBEADM_ARGS='--pod-infra-container-image={IMAGE} --v=2'",
            "KUBELET_KUBEADM_ARGS='--v=2'",
        ),
        (
            'A=1\nKUBELET_KUBEADM_ARGS="--v=2"\nB=2\n',
            f'A=1\nKUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image={IMAGE}"\nB=2\n',
            'A=1\nKUBELET_KUBEADM_ARGS="--v=2"\nB=2\n',
        ),
        (
            "KUBELET_KUBEADM_ARGS=--pod-infra-container-image=a.io/p:1 -pod-infra-container-image b.io/p:2 --v=2\n",
            f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE} --v=2"\n',
            'KUBELET_KUBEADM_ARGS="--v=2"\n',
        ),
        ("A=1", f'A=1\nKUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE}"\n', 'A=1\nKUBELET_KUBEADM_ARGS=""\n'),
        (None, f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image={IMAGE}"\n', 'KUBELET_KUBEADM_ARGS=""\n'),
    ],
)
def test_kubelet_flags_forms(existing, v134, v135):
    assert rc.kubelet_flags(existing, "1.34", IMAGE) == v134
    assert rc.kubelet_flags(existing, "1.35", IMAGE) == v135
    assert rc.kubelet_flags(v134, "1.34", IMAGE) == v134
    assert rc.kubelet_flags(v134, "1.35", IMAGE) == v135


@pytest.mark.parametrize(
    ("kubernetes", "image", "message"),
    [("1.23", IMAGE, "knows 1.24 to 1.36"), ("1.37", IMAGE, "knows 1.24 to 1.36"), ("1.34", "Pause", "lowercase")],
)
def test_kubelet_flags_refuses_unknown_input(kubernetes, image, message):
    with pytest.raises(ConfigError, match=message):
        rc.kubelet_flags(None, kubernetes, image)
