"""The nine node checks of `podinfra check`, in order; each records expected, actual and a remediation.

Checks 1-6 and 9 only read. Checks 7-8 start probe pods through the CRI and run only when none of
1-6 failed on this node: a probe on a drifted node could pull from elsewhere, or re-pull the pause
image and so hide the very drift a check found.
"""

from __future__ import annotations

import hashlib

import pytest

from podinfra import versions
from podinfra.check.catalogue import CheckResult
from podinfra.check.cri import CRIError
from podinfra.node.containerd import ctr, hazards
from podinfra.node.containerd.config import stale_keys
from podinfra.node.containerd.shape import runtime_shape
from podinfra.node.runtime_files import kubelet_pause_flag
from podinfra.suite import crio_checks, probes, readers, waits
from podinfra.suite.node import CRI, Node, done, mirror_route, require, stored
from podinfra.suite.probes import BUSYBOX
from podinfra.tomlpath import dotted


@pytest.mark.check("1")
def test_runtime_answers_on_its_cri_socket(node: Node, cri: CRI, record: CheckResult) -> None:
    kubernetes = node.expect.settings.kubernetes_version
    record.expected = f"{node.runtime} {node.version} answering CRI v1 on {cri.socket}"
    docker = node.docker_package_config() if node.runtime == "containerd" and cri.runtime is None else None
    if docker:
        record.actual = docker
        pytest.fail(docker)
    cri.get()
    name, version = cri.answer
    record.actual = f"{name} {version} on {cri.socket}"
    if cri.leftovers_note:
        record.actual += f" ({cri.leftovers_note})"
    if cri.kept_leftovers:  # the runtime answers; what is left is ours, not the node's fault
        record.warn(record.actual)
        record.remediation = probes.KEPT_REMEDIATION
    if node.runtime == "containerd" and not versions.containerd_supported(kubernetes, node.version):
        record.warn(
            f"{record.actual}: Kubernetes {kubernetes} needs containerd 2.0 or later "
            f"(1.{int(versions.CONTAINERD_2_REQUIRED.split('.')[1]) - 1} was the last release for 1.x)"
        )
        upgrade = f"Upgrade containerd on this node to 2.x before it runs Kubernetes {kubernetes}."
        record.remediation = f"{upgrade} {record.remediation}" if cri.kept_leftovers else upgrade


@pytest.mark.check("2")
def test_running_runtime_uses_the_sandbox_image(node: Node, cri: CRI, record: CheckResult) -> None:
    expect = node.expect
    if node.runtime == "cri-o":
        crio_checks.verdict(
            record,
            crio_checks.pause_image(node),
            "Run deploys/node.py for this node: it writes pause_image in its crio.conf.d drop-in, comments it out "
            "in drop-ins read after it, and reloads CRI-O.",
        )
        return
    shape = runtime_shape(node.version)
    path = dotted(shape.sandbox_path)
    record.expected = (
        f"config version {shape.config_version}, {path} = {expect.sandbox_image!r} in the running daemon's "
        "effective config, no file it reads changed since it started, no ignored 1.x keys"
    )
    found = node.daemon
    if not found.dump:
        pytest.fail(f"`containerd --config {found.config} config dump` printed nothing")
    image, _ = found.effective(shape)
    version = found.document.get("version")
    # containerd 1.x reports the sandbox image it runs with through its CRI; 2.x keeps it in its images plugin.
    running = cri.runtime.status_config().get("sandboxImage") if cri.runtime and shape.config_version == 2 else None
    problems = []
    changed = found.changed_since_start()
    if changed:
        daemon_runs = repr(running) if running else "the config it read at start"
        problems.append(
            f"restart pending: the daemon runs {daemon_runs}, the file says {path} = {image!r} "
            f"({', '.join(changed)} changed after containerd started)"
        )
        record.remediation = (
            "Restart containerd so that it reads its files: run deploys/node.py for this node (it restarts in "
            "batches and rolls back a config containerd rejects), or `systemctl restart containerd`."
        )
    elif running is not None and running != expect.sandbox_image:
        problems.append(f"the daemon runs {running!r}")
    # containerd 2.3 (version 4) reads version 3 files as they are.
    if version != shape.config_version and not (shape.config_version == 4 and version == 3):
        problems.append(f"effective config is version {version}, containerd {node.version} uses {shape.config_version}")
    if image != expect.sandbox_image:
        problems.append(f"{path} = {image!r}")
    problems += [
        h
        for h in (node.docker_package_config(), isinstance(image, str) and hazards.sandbox_image(node.version, image))
        if h
    ]
    stale = stale_keys(node.config_text())
    if stale:
        problems.append(f"{found.config} sets {', '.join(stale)}, which containerd {node.version} ignores or misreads")
    record.actual = "; ".join(problems) or (
        f"version {version}, {path} = {image!r}" + (f", CRI runs {running!r}" if running else "")
    )
    assert not problems, record.actual


@pytest.mark.check("3")
def test_mirror_config_sends_pulls_to_the_local_registry_only(node: Node, record: CheckResult) -> None:
    settings = node.expect.settings
    paths = settings.hosts_toml
    if node.runtime == "cri-o":
        crio_checks.verdict(
            record,
            crio_checks.registries(node),
            "Run deploys/node.py for this node: it rewrites each mirrored registry to the local registry in "
            "registries.conf.d (no mirror, no fallback), comments out the [[registry]] tables that would decide "
            "instead (the same prefix read later, a longer prefix), and puts the CA in /etc/containers/certs.d.",
        )
        return
    shape = runtime_shape(node.version)
    certs = settings.containerd_certs_dir
    record.expected = (
        f"{dotted(shape.config_path_path)} = {certs!r}; hosts.toml for {', '.join(paths)} "
        f"with `server` and every host at {settings.local_registry}" + (", its CA on the node" if settings.ca else "")
    )
    _, config_path = node.daemon.effective(shape)
    dirs, problems = node.config_path_problems(config_path)
    texts = {u: node.read(path) for u, path in paths.items()}
    node_ca = {ca: node.sha256(ca) for ca in readers.cas_named([text for text in texts.values() if text])}
    ca_digest = hashlib.sha256(settings.ca.read_bytes()).hexdigest() if settings.ca else None
    for upstream, path in paths.items():
        problems += readers.mirror_problems(
            path, upstream, texts[upstream], settings.local_registry, ca_digest, node_ca
        )
    record.actual = "; ".join(problems) or (
        f"config_path {':'.join(dirs)}; {', '.join(paths)} -> {settings.local_registry} only"
    )
    assert not problems, record.actual


@pytest.mark.check("4")
def test_kubelet_flag_agrees_with_the_runtime(node: Node, record: CheckResult) -> None:
    settings, image = node.expect.settings, node.expect.sandbox_image
    takes_flag = versions.kubelet_takes_pause_flag(settings.kubernetes_version)
    path = settings.kubelet_flags_file
    record.expected = (
        f"--pod-infra-container-image={image} in {path}"
        if takes_flag
        else f"no --pod-infra-container-image in {path} (Kubernetes {settings.kubernetes_version} refuses it)"
    )
    text = node.read(path)
    if text is None and not node.has_kubelet:
        record.info(f"no kubelet on this node and no {path}: nothing to check")
        return
    flag = kubelet_pause_flag(text)
    record.actual = (
        f"{path} is missing"
        if text is None
        else f"--pod-infra-container-image={flag}"
        if flag
        else ("no --pod-infra-container-image")
    )
    assert flag == (image if takes_flag else None), record.actual


@pytest.mark.check("5")
def test_pause_image_is_stored_with_its_digest_and_pinned(node: Node, cri: CRI, record: CheckResult) -> None:
    expect = node.expect
    record.expected = f"{expect.store_name} at {expect.digest or '(digest unknown)'} ({expect.digest_source}), pinned"
    digest, labels = stored(node, cri, expect.store_name)
    if digest is None:
        record.actual = f"{expect.store_name} is not in the image store"
        pytest.fail(record.actual)
    reported = cri.get().image_status(expect.store_name)
    cri_pinned = bool(reported and reported.pinned)
    problems = []
    if expect.digest is None:
        problems.append(f"expected digest {expect.digest_source}; set host data pause_digest")
    elif digest != expect.digest:
        problems.append(f"digest {digest}")
    if node.runtime == "containerd":
        verdict, pin = readers.pin_verdict(node.version, labels.get(ctr.PINNED_LABEL), cri_pinned)
    else:
        verdict, pin = ("pass" if cri_pinned else "fail"), f"CRI pinned={str(cri_pinned).lower()}"
    if verdict == "fail":
        problems.append(pin)
    record.actual = "; ".join(problems) or f"{expect.store_name} at {digest}, {pin}"
    assert not problems, record.actual
    if verdict == "warn":
        record.warn(record.actual)
        record.remediation = "Upgrade containerd to 1.6.22, 1.7.3 or later: they honour the pinned label."


@pytest.mark.check("6")
def test_node_resolves_pause_at_its_mirror_and_not_upstream(node: Node, record: CheckResult) -> None:
    expect, settings = node.expect, node.expect.settings
    url, ca, source = crio_checks.route(node) if node.runtime == "cri-o" else mirror_route(node)
    gap = f"{settings.airgap_probe} unreachable" if settings.airgap_probe else "the air gap checked (airgap_probe)"
    record.expected = f"HTTP 200 with digest {expect.digest or '(any)'} at the node's mirror; {gap}"
    (rc, status, headers, error), waited = waits.wait_for(
        f"{url} (from {source})",
        lambda left: node.get_manifest(url, ca, left),
        lambda answer: waits.registry_pending(answer[0], answer[1]),
        waits.Deadline(settings.check_probe_timeout),
        describe=lambda answer: f"HTTP {answer[1]}" if answer[1] else answer[3] or f"curl rc {answer[0]}",
    )
    digest = headers.get("docker-content-digest")
    problems = []
    if rc != 0 or status != 200:
        problems.append(f"{url} (from {source}): " + (f"HTTP {status}" if status else error or f"rc {rc}"))
        record.remediation = (
            f"The node cannot resolve pause:{settings.pause} at {url}: mirror it into the registry that URL names "
            "(deploys/mirror.py, or `podinfra mirror`), or point hosts.toml at the registry that holds it "
            "(deploys/node.py); for TLS or 401 errors, check the CA and the pull credentials."
        )
    elif expect.digest and digest != expect.digest:
        problems.append(f"{url} serves {digest}")
    latency = f" after {waited:.1f}s" if waited >= 1 else ""
    if settings.airgap_probe:
        rc, message = node.airgap()
        # 6: no name, 7: no route or refused, 28: timed out; anything else means a connection was made.
        if rc not in (6, 7, 28):
            problems.append(f"the node reached the upstream {settings.airgap_probe} (curl rc {rc})")
            record.remediation = (
                f"The node reaches {settings.airgap_probe}, which the inventory says it must not (airgap_probe): "
                "remove its route or open firewall rule to the upstream."
            )
        else:
            gap = f"{settings.airgap_probe} unreachable ({message.strip().removeprefix('curl: ')[:120]})"
    record.actual = "; ".join(problems) or f"{url} (from {source}): HTTP 200{latency}, {digest}; {gap}"
    assert not problems, record.actual
    if not settings.airgap_probe:
        record.warn(f"{record.actual}: the air gap was not checked (no airgap_probe)")
        record.remediation = "Set host data airgap_probe to an upstream HOST:PORT the node must not reach."


@pytest.mark.check("7")
def test_probe_sandbox_starts_from_the_expected_pause(
    node: Node, cri: CRI, record: CheckResult, request: pytest.FixtureRequest
) -> None:
    require(done(request.config, node.name), record, ("1", "2", "3", "4", "5", "6"))
    expect, limit = node.expect, node.expect.settings.check_probe_timeout
    record.expected = f"Ready within {limit:g}s from {expect.sandbox_image} ({expect.digest}), a pod IP, removed"
    runtime = cri.get()
    deadline = waits.Deadline(limit)  # from before RunPodSandbox: Ready counts from the ask
    # CRI-O runs pause only where the pod shares its PID namespace (drop_infra_ctr): prove it where it runs.
    share_pid = node.runtime == "cri-o"
    with probes.held_interrupts() as checkpoint, probes.probe_sandbox(runtime, share_pid) as sandbox_id:
        status, ready = waits.wait_for(
            "the probe sandbox to become Ready",
            lambda left: runtime.sandbox_status(sandbox_id),
            lambda found: found.state != "SANDBOX_READY",
            deadline,
            describe=lambda found: found.state,
            between=checkpoint,
        )
        digest, _ = stored(node, cri, status.image) if status.image else (None, {})
    gone = sandbox_id not in runtime.sandboxes()
    problems = []
    if digest is None or digest != expect.digest:
        problems.append(f"sandbox image {status.image or '(none)'} is {digest}")
    if not status.ip:
        problems.append("no pod IP")
    if not gone:
        problems.append(f"sandbox {sandbox_id[:12]} still listed after removal")
    if share_pid and not status.pid:
        problems.append("no pause process (infra pid 0) in a PID-sharing sandbox")
    record.actual = "; ".join(problems) or (
        f"Ready in {ready:.2f}s from {status.image} ({digest}), IP {status.ip}, removed"
        + (f"; pause ran as pid {status.pid}, {crio_checks.PROBE_CASE}" if share_pid else "")
    )
    assert not problems, record.actual


@pytest.mark.check("8")
def test_pause_holds_the_pods_namespaces(
    node: Node, cri: CRI, record: CheckResult, request: pytest.FixtureRequest
) -> None:
    image = node.expect.settings.check_probe_image
    if image is False:
        record.info("not run: check_probe_image is false")
        return
    require(done(request.config, node.name), record, ("1", "2", "3", "4", "5", "6", "7"))
    record.expected = (
        "pause is PID 1 and reaps an orphan; the app sees the pod IP on eth0, keeps it after a kill and restart; "
        "stopping the sandbox stops the app"
    )
    runtime = cri.get()
    try:
        if runtime.image_status(image) is None:
            runtime.pull(image)
    except CRIError as e:
        settings = node.expect.settings
        record.warn(f"not run: cannot pull the probe image {image}: {e}")
        record.remediation = (
            f"Put the probe image into the local registry: `podinfra probe-image --to {settings.local_registry} "
            f"--ca-file CA --username PUSH_USER --password-file FILE` (it builds {image} from this machine's "
            "static busybox), or set check_probe_image to an image with a static /bin/busybox, or false."
        )
        pytest.skip(record.actual)
    steps: list[str] = []
    command = [BUSYBOX, "sleep", "3600"]
    with probes.held_interrupts() as checkpoint, probes.probe_sandbox(runtime, share_pid=True) as sandbox_id:
        ip = runtime.sandbox_status(sandbox_id).ip
        app = runtime.create_container(sandbox_id, "app", image, command, share_pid=True)
        runtime.start_container(app)
        checkpoint()

        # Few execs (each a runc exec on the node): one reads PID 1 (name, signals handled) and the addresses, again
        # until PID 1 is pause ready to reap (RunPodSandbox returns before its init exec'd pause, and pause sets its
        # SIGCHLD handler after its exec: an orphan exiting before that stays a zombie); one makes an orphan; looks.
        limit = node.expect.settings.check_probe_timeout
        look = f"{BUSYBOX} cat /proc/1/comm; {BUSYBOX} grep ^Sig /proc/1/status; {BUSYBOX} ip -o -4 addr show"
        try:
            looked, waited = waits.wait_for(
                "pause to become PID 1, ready to reap",
                lambda left: probes.sh(runtime, app, look, left),
                lambda out: not readers.init_reaps(out),
                waits.Deadline(limit),
                describe=lambda out: f"PID 1 is {out.partition(chr(10))[0]}",
                between=checkpoint,
            )
        except waits.Slow as slow:
            if slow.last.startswith("PID 1 is runc:"):
                raise
            # PID 1 is not runc's init but handles no SIGCHLD: the orphan below shows whether it reaps at all.
            looked, waited = probes.sh(runtime, app, look, limit), slow.waited
        init, _, seen = looked.partition("\n")
        steps.append(f"PID 1 is {init}" + (f" (after {waited:.1f}s)" if waited >= 1 else ""))
        record.actual = "; ".join(steps)
        assert init == "pause", record.actual

        deadline = waits.Deadline(limit)
        orphan_script = (
            f"b={BUSYBOX}; pid=$( ($b sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!) ); "
            'ppid=$($b grep PPid /proc/$pid/status 2>/dev/null | $b cut -f2); echo "$pid ${ppid:-gone}"'
        )
        orphan, parent = probes.sh(runtime, app, orphan_script, deadline.left()).split()
        steps.append(f"orphan {orphan} re-parented to {parent}")
        record.actual = "; ".join(steps)
        assert parent in ("1", "gone"), record.actual
        look = f's=$({BUSYBOX} grep State /proc/{orphan}/status 2>/dev/null | {BUSYBOX} cut -f2); echo "${{s:-reaped}}"'
        try:
            state, waited = waits.wait_for(
                f"orphan {orphan} to be reaped",
                lambda left: probes.sh(runtime, app, look, left).strip(),
                lambda found: found != "reaped",
                deadline,
                between=checkpoint,
            )
        except waits.Slow as slow:
            if waits.orphan_verdict(slow.last) == "fail":
                steps[-1] += f", then still {slow.last} {slow.waited:.1f}s later: pause does not reap it"
                record.actual = "; ".join(steps)
                raise AssertionError(record.actual) from None
            raise
        steps[-1] += f", then {state}" + (f" (after {waited:.1f}s)" if waited >= 1 else "")
        record.actual = "; ".join(steps)

        steps.append(f"app sees {ip}" if f"inet {ip}/" in seen else f"app does not see {ip}: {seen.strip()[:200]}")
        record.actual = "; ".join(steps)
        assert f"inet {ip}/" in seen, record.actual
        checkpoint()

        runtime.stop_container(app, grace=0)
        killed = runtime.container_state(app)
        runtime.remove_container(app)
        app = runtime.create_container(sandbox_id, "app", image, command, attempt=1, share_pid=True)
        runtime.start_container(app)
        again = probes.sh(runtime, app, f"{BUSYBOX} ip -o -4 addr show", limit)
        kept = f"inet {ip}/" in again and runtime.sandbox_status(sandbox_id).ip == ip
        steps.append(f"app killed ({killed}) and started again: IP {'kept' if kept else 'changed'}")
        record.actual = "; ".join(steps)
        assert killed == "CONTAINER_EXITED" and kept, record.actual

        runtime.stop_sandbox(sandbox_id)
        after = runtime.container_state(app)
        steps.append(f"sandbox stopped: app {after}")
        record.actual = "; ".join(steps)
        assert after == "CONTAINER_EXITED", record.actual
    record.actual = "; ".join(steps) + "; removed" + (f" ({crio_checks.PROBE_CASE})" if node.runtime == "cri-o" else "")


@pytest.mark.check("9")
def test_running_sandboxes_use_the_expected_pause(node: Node, cri: CRI, record: CheckResult) -> None:
    expect = node.expect
    record.expected = f"every running sandbox from {expect.sandbox_image}"
    runtime = cri.get()
    others = readers.sandboxes_on_other_pause(runtime.sandbox_images(), expect.sandbox_image, expect.store_name)
    if others:
        record.info(f"{len(others)} sandbox(es) still on another pause: " + "; ".join(others[:10]))
        return
    record.actual = "every running sandbox runs it (or none runs)"
