"""The config.toml files the containerd tests start from: an operator's file on each containerd line, a
version 3 file still carrying 1.x keys, and the key paths of each line's shape; with the helpers that read them."""

from __future__ import annotations

import difflib
from typing import Any

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
