"""podinfra.node.containerd.config: config.toml edited for every containerd line, parsed back, compared with golden
files (tests/unit/test_containerd_binaries.py feeds the edits to the real containerd binaries).

Golden files in tests/unit/golden/ were reviewed by hand against containerd's documentation;
``PODINFRA_UPDATE_GOLDEN=1 pytest tests/unit/test_containerd_config.py`` rewrites them (review the diff).
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from podinfra.errors import ConfigError
from podinfra.node.containerd.config import edit, stale_keys
from podinfra.node.containerd.shape import runtime_shape, version_from_output
from tests.unit.containerd_files import (
    CERTS,
    IMAGE,
    OPERATOR_V2,
    OPERATOR_V3,
    SHAPE_IDS,
    SHAPES,
    STALE_V3,
    V2_CONFIG_PATH,
    V2_SANDBOX,
    V3_CONFIG_PATH,
    V3_SANDBOX,
    assert_only_keys_changed,
    at,
    put,
)
from tests.unit.goldens import golden

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
    assert version_from_output(output) == version


def test_containerd_version_from_output_refuses_other_text():
    with pytest.raises(ConfigError, match="is containerd installed"):
        version_from_output("bash: containerd: command not found")


@pytest.mark.parametrize(("containerd", "config_version", "sandbox", "config_path", "_"), SHAPES, ids=SHAPE_IDS)
def test_shape_per_release(containerd, config_version, sandbox, config_path, _):
    shape = runtime_shape(containerd)
    assert (shape.config_version, shape.sandbox_path, shape.config_path_path) == (config_version, sandbox, config_path)
    assert runtime_shape(f"v{containerd}~ds1") == shape


@pytest.mark.parametrize("bad", ["1.5.9", "1.4", "3.0.0", "0.2"])
def test_unknown_containerd_names_the_supported_range(bad):
    with pytest.raises(ConfigError, match="knows containerd 1.6 to 2.x"):
        runtime_shape(bad)


@pytest.mark.parametrize("bad", ["latest", "", "1"])
def test_malformed_containerd_version(bad):
    with pytest.raises(ConfigError, match="not a containerd version"):
        runtime_shape(bad)


@pytest.mark.parametrize(("containerd", "config_version", "sandbox", "config_path", "_"), SHAPES, ids=SHAPE_IDS)
def test_render_from_nothing_holds_only_the_two_keys(containerd, config_version, sandbox, config_path, _):
    text = edit(None, containerd, IMAGE).text
    expected: dict[str, Any] = {"version": config_version}
    put(expected, sandbox, IMAGE)
    put(expected, config_path, CERTS)
    assert tomllib.loads(text) == expected
    assert "{" not in text, "tables are written as [table] headers"
    assert edit(" \n", containerd, IMAGE).text == text
    assert edit(text, containerd, IMAGE).text == text
    golden(f"containerd-{containerd}-new.toml", text)


@pytest.mark.parametrize(("containerd", "_", "sandbox", "config_path", "operator"), SHAPES, ids=SHAPE_IDS)
def test_operator_file_keeps_everything_but_the_two_keys(containerd, _, sandbox, config_path, operator):
    text = edit(operator, containerd, IMAGE).text
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
    once = edit(operator, containerd, IMAGE).text
    assert edit(once, containerd, IMAGE).text == once
    other = edit(once, containerd, "10.213.0.2:5000/pause:3.10.1", "/etc/podinfra/certs.d").text
    assert at(tomllib.loads(other), sandbox) == "10.213.0.2:5000/pause:3.10.1"
    assert at(tomllib.loads(other), config_path) == "/etc/podinfra/certs.d"
    assert edit(other, containerd, IMAGE).text == once


def test_missing_tables_are_created_as_headers_in_the_file_style():
    text = edit(
        "version = 3\n# kubeadm\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
        "  SystemdCgroup = true\n",
        "2.1.0",
        IMAGE,
    ).text
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
    text = edit(OPERATOR_V3, "2.0.0", IMAGE).text
    assert f"      sandbox = '{IMAGE}'\n" in text
    v2 = edit(OPERATOR_V2, "1.6.20", IMAGE).text
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
    text = edit(operator, "1.7.0", IMAGE).text
    assert '\n  [plugins."io.containerd.grpc.v1.cri".registry]\n' in text
    assert_only_keys_changed(operator, text, ("config_path",))
    assert edit(text, "1.7.0", IMAGE).text == text


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
    out = edit(text, "1.6.20", IMAGE).text
    parsed = tomllib.loads(out)
    assert (at(parsed, V2_SANDBOX), at(parsed, V2_CONFIG_PATH)) == (IMAGE, CERTS), where
    assert edit(out, "1.6.20", IMAGE).text == out, where
    if "\r\n" in text:
        assert "\n" not in out.replace("\r\n", "")


DOTTED_SANDBOX_ONLY = 'version = 2\n[plugins]\n"io.containerd.grpc.v1.cri".sandbox_image = ""\n'


def test_a_table_tomlkit_cannot_add_is_refused_not_misplaced():
    # tomlkit 0.13 writes a table added under dotted keys with a wrong header; the result is checked, not trusted.
    with pytest.raises(ConfigError, match=r"could not set plugins\.\"io\.containerd\.grpc\.v1\.cri\"\.registry"):
        edit(DOTTED_SANDBOX_ONLY, "1.6", IMAGE)


@pytest.mark.parametrize(
    ("text", "containerd", "message"),
    [
        ('[plugins.cri]\nsandbox_image = "x"\n', "1.6.20", "add `version = 2`"),
        ('[plugins.cri]\nsandbox_image = "x"\n', "1.7.0", "add `version = 2`"),
        ('[plugins.cri]\nsandbox_image = "x"\n', "2.1.0", "is version 1, .*containerd config migrate"),
        ("# only comments\n", "2.2.0", "is version 1, .*containerd config migrate"),
        ("version = 1\n", "1.6.20", "add `version = 2`"),
        ("version = 3\n", "1.7.27", "reads up to version 2"),
        ("version = 4\n", "2.2.0", "reads up to version 3"),
        ("version = 5\n", "2.4.0", "reads up to version 4"),
        ('version = "2"\n', "1.6.20", "must be an integer"),
    ],
)
def test_version_mismatch_names_the_fix(text, containerd, message):
    with pytest.raises(ConfigError, match=message):
        edit(text, containerd, IMAGE)


def test_version_3_file_on_containerd_2_3_is_edited_as_it_is():
    # containerd 2.3 reads version 3 files unchanged and keeps the CRI keys where version 3 has them.
    text = edit(OPERATOR_V3, "2.3.1", IMAGE).text
    assert text == edit(OPERATOR_V3, "2.2.0", IMAGE).text
    assert tomllib.loads(text)["version"] == 3


@pytest.mark.parametrize("containerd", ["2.0.0", "2.3.0"])
def test_stale_1x_keys_in_a_version_3_file_are_listed_and_removed(containerd):
    assert stale_keys(STALE_V3) == [
        'plugins."io.containerd.grpc.v1.cri".sandbox_image',
        'plugins."io.containerd.grpc.v1.cri".registry.config_path',
        'plugins."io.containerd.grpc.v1.cri".registry.mirrors',
    ]
    result = edit(STALE_V3, containerd, IMAGE)
    parsed = tomllib.loads(result.text)
    assert parsed["plugins"]["io.containerd.grpc.v1.cri"] == {"stream_server_address": "127.0.0.1"}
    assert (at(parsed, V3_SANDBOX), at(parsed, V3_CONFIG_PATH)) == (IMAGE, CERTS)
    assert "mirror.example" not in result.text and "pause:3.8" not in result.text
    assert list(result.removed) == stale_keys(STALE_V3)
    assert "2.3 copies them over the images plugin" in result.notes[0]
    assert stale_keys(result.text) == []
    assert edit(result.text, containerd, IMAGE) == type(result)(result.text)


def test_every_1x_registry_key_in_a_version_3_file_goes():
    # containerd 2.3 copies the whole 1.x `registry` table over the images plugin's, config_path included.
    text = (
        'version = 3\n[plugins."io.containerd.grpc.v1.cri".registry.configs."r.example".auth]\n  username = "u"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.auths."r.example"]\n  auth = "x"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.headers]\n  X-Meta = ["1"]\n'
    )
    assert stale_keys(text) == [
        'plugins."io.containerd.grpc.v1.cri".registry.configs',
        'plugins."io.containerd.grpc.v1.cri".registry.auths',
        'plugins."io.containerd.grpc.v1.cri".registry.headers',
    ]
    result = edit(text, "2.3.0", IMAGE)
    assert "registry" not in tomllib.loads(result.text)["plugins"].get("io.containerd.grpc.v1.cri", {})
    assert "hosts.toml" in result.notes[-1]


def test_stale_keys_only_concern_version_3_files():
    assert stale_keys(OPERATOR_V2) == []
    assert stale_keys(OPERATOR_V3) == []
    assert stale_keys("") == [] and stale_keys("version = [") == []


def test_a_version_2_file_on_containerd_2_is_edited_at_its_own_key_paths_with_a_note():
    """Debian's containerd 2.1 package ships a version 2 config.toml, which 2.x migrates in memory."""
    result = edit(OPERATOR_V2, "2.1.9", IMAGE)
    assert result.text == edit(OPERATOR_V2, "1.7.27", IMAGE).text
    assert tomllib.loads(result.text)["version"] == 2 and at(tomllib.loads(result.text), V2_SANDBOX) == IMAGE
    assert result.notes == (
        "config.toml is version 2, which containerd 2.1.9 migrates in memory at every start: edited at its "
        "version 2 key paths; `containerd config migrate` shows it as version 3",
    )
    assert edit(OPERATOR_V2, "1.7.27", IMAGE).notes == ()


def test_configs_tls_is_refused_on_1x_and_noted_on_2x():
    tls = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.configs.'r.example'.tls]\nca_file = 'x'\n"
    notes = edit(tls, "2.1.9", IMAGE).notes
    assert any("containerd 2.x removed and ignores" in note for note in notes)


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
            r"configs\.\*\.tls, which containerd 1\.x rejects",
        ),
        ('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n', "1.6.20", "disables the CRI plugin"),
        ("version = 3\ndisabled_plugins = ['io.containerd.cri.v1.images']\n", "2.1.0", "disables the CRI plugin"),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = "x"\n', "1.6.20", "expects a table"),
        ("version = [\n", "1.6.20", "not valid TOML"),
    ],
)
def test_files_containerd_would_reject_are_refused(text, containerd, message):
    with pytest.raises(ConfigError, match=message):
        edit(text, containerd, IMAGE)


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
        edit(None, "1.6.20", image, config_path)
