"""Blobs as streams: verified on the way, uploaded in chunks that follow the registry's moving upload
location, several at once within a bound, with progress only on a terminal."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from podinfra.images import cli as images_cli
from podinfra.images.mirror import RegistrySource, Summary, copy_image
from podinfra.images.oci import digest_of
from podinfra.images.reference import parse
from podinfra.images.registry import RegistryClient
from podinfra.images.transfer import Cancelled, IntegrityError, Transfers, Verified

from ..faults.bigimage import MIB, push_image


def stream(data: bytes, piece: int = 3) -> Verified:
    return Verified(iter([data[i : i + piece] for i in range(0, len(data), piece)]), digest_of(data), len(data), "b")


def test_verified_reads_exact_sizes_and_refuses_before_the_last_bytes_of_a_bad_blob():
    data = bytes(range(100))
    good = stream(data)
    assert good.read(10) == data[:10] and good.read(-1) == data[10:] and good.read(5) == b""
    bad = Verified(iter([data[:50], b"X" + data[51:]]), digest_of(data), 100, "blob b")
    assert bad.read(50) == data[:50]
    with pytest.raises(IntegrityError, match=r"^blob b: expected sha256:\w+ \(100 bytes\), got sha256:\w+; refusing"):
        bad.read(50)  # the last 50 bytes are never handed out
    with pytest.raises(IntegrityError, match=r"got 60 bytes"):
        Verified(iter([data[:60]]), digest_of(data), 100, "b").read()
    with pytest.raises(IntegrityError, match=r"got 101 bytes"):
        Verified(iter([data, b"!"]), digest_of(data), 100, "b").read()
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        Verified(iter([data]), digest_of(data), 100, "b", stop=stop).read()


class MovingUploads(BaseHTTPRequestHandler):
    """A registry's upload endpoint whose location changes on every answer, relative and absolute by turns,
    that asks for chunks of at least 1500 bytes and checks each Content-Range against what it holds."""

    received = bytearray()
    seen: list[tuple[str, str, str]] = []  # (method, path, Content-Range)
    committed: dict[str, bytes] = {}

    def _answer(self, status: int, location: str | None = None, **headers: str) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).received = bytearray()
        self.seen.append(("POST", self.path, ""))
        self._answer(202, "/v2/x/blobs/uploads/u1?state=0", **{"OCI-Chunk-Min-Length": "1500"})

    def do_PATCH(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        first, last = (int(v) for v in self.headers["Content-Range"].split("-"))
        self.seen.append(("PATCH", self.path, self.headers["Content-Range"]))
        if first != len(self.received) or last - first + 1 != length:
            self._answer(416)
            return
        self.received += self.rfile.read(length)
        step = len(self.seen)
        port = self.server.server_address[1]
        moved = (
            f"step{step}?state={step}" if step % 2 else f"http://127.0.0.1:{port}/elsewhere/u1/step{step}?state={step}"
        )
        self._answer(202, moved, Range=f"0-{len(self.received) - 1}")

    def do_PUT(self) -> None:  # noqa: N802
        self.seen.append(("PUT", self.path, self.headers["Content-Length"]))
        self.received += self.rfile.read(int(self.headers["Content-Length"]))  # the last chunk comes with the PUT
        digest = parse_qs(urlsplit(self.path).query)["digest"][0]
        if digest != digest_of(bytes(self.received)):
            self._answer(400)
            return
        self.committed[digest] = bytes(self.received)
        self._answer(201, f"/v2/x/blobs/{digest}")

    def log_message(self, *args: object) -> None:
        pass


def test_a_chunked_upload_follows_every_new_location_the_registry_answers():
    MovingUploads.seen, MovingUploads.committed = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), MovingUploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = hashlib.sha256(b"seed").digest() * 200  # 6400 bytes: 4 chunks of at least 1500, and the rest
        client = RegistryClient(f"http://127.0.0.1:{server.server_port}", chunk_size=1000)
        client.upload_blob("x", digest_of(data), len(data), stream(data, piece=700))
    finally:
        server.shutdown()
    assert MovingUploads.committed == {digest_of(data): data}
    methods = [method for method, _, _ in MovingUploads.seen]
    assert methods == ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "PUT"]
    ranges = [r for method, _, r in MovingUploads.seen if method == "PATCH"]
    assert ranges == ["0-1499", "1500-2999", "3000-4499", "4500-5999"]
    assert MovingUploads.seen[-1][2] == "400"  # the rest, with the PUT
    # Relative answers resolve against the address that gave them ("step3" next to ".../step2").
    assert [urlsplit(path).path for _, path, _ in MovingUploads.seen] == [
        "/v2/x/blobs/uploads/", "/v2/x/blobs/uploads/u1", "/elsewhere/u1/step2", "/elsewhere/u1/step3",
        "/elsewhere/u1/step4", "/elsewhere/u1/step5",
    ]  # fmt: skip
    assert MovingUploads.seen[-1][1].startswith("/elsewhere/u1/step5?state=5&digest=sha256:")


class Corrupting(RegistrySource):
    """Serves one blob with a byte flipped in the middle of the stream."""

    def __init__(self, client: RegistryClient, repository: str, victim: str):
        super().__init__(client, repository)
        self.victim = victim

    def blob(self, digest):
        for number, chunk in enumerate(super().blob(digest)):
            yield (bytes([chunk[0] ^ 1]) + chunk[1:]) if digest == self.victim and number == 2 else chunk


def test_a_blob_corrupted_mid_stream_is_refused_its_upload_cancelled_and_nothing_tagged(start_registry, monkeypatch):
    upstream, dest = start_registry(), start_registry()
    manifest = push_image(upstream, "big", "1", [4 * MIB])
    layer = json.loads(manifest.data)["layers"][0]["digest"]
    dest.chunk_size = MIB  # two PATCHes are sent before the bad chunk arrives
    cancelled = []
    monkeypatch.setattr(RegistryClient, "_cancel", lambda self, location: cancelled.append(location))
    with pytest.raises(IntegrityError, match=rf"^blob {layer} of .*: expected {layer} .*refusing it, nothing tagged$"):
        copy_image(Corrupting(upstream, "big", layer), "1", dest, "big", "1", Summary())
    assert len(cancelled) == 1
    assert dest.manifest_digest("big", "1") is None and not dest.blob_exists("big", layer)


class Counting(RegistrySource):
    """Counts the blob streams open at once (each held a moment, so they overlap when they can)."""

    def __init__(self, client: RegistryClient, repository: str):
        super().__init__(client, repository)
        self.open = self.most = 0
        self.lock = threading.Lock()

    def blob(self, digest):
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            time.sleep(0.2)
            yield from super().blob(digest)
        finally:
            with self.lock:
                self.open -= 1


def test_blobs_of_an_image_are_copied_at_once_within_the_bound(start_registry):
    upstream, dest = start_registry(), start_registry()
    manifest = push_image(upstream, "many", "1", [100_000 + n for n in range(5)])
    source = Counting(upstream, "many")
    summary = Summary()
    with Transfers(2) as transfers:
        assert copy_image(source, "1", dest, "many", "1", summary, transfers=transfers) == manifest.digest
    assert source.most == 2 and summary.blobs_uploaded == 6


def test_images_of_one_registry_share_one_client(start_registry):
    args = argparse.Namespace(source="127.0.0.1:5000", source_insecure=True, source_ca_file=None)
    refs = [parse("registry.k8s.io/pause:3.9"), parse("registry.k8s.io/pause:3.10"), parse("quay.io/x/y:1")]
    sources = images_cli.sources(refs, args)
    assert sources[0].client is sources[1].client and sources[2].client is not sources[0].client


def test_a_recopy_asks_the_destination_four_requests_for_three_images(capsys, start_registry, tmp_path, monkeypatch):
    from podinfra import cli
    from podinfra.lab import pause

    upstream, dest = start_registry(), start_registry()
    pause.publish(upstream, tmp_path)
    minors = ["--kubernetes-version", "1.30", "--kubernetes-version", "1.31", "--kubernetes-version", "1.34"]
    argv = [
        "mirror",
        "--source",
        upstream.host,
        "--source-insecure",
        *minors,
        "--to",
        dest.host,
        "--insecure",
        "--json",
    ]
    assert cli.main(argv) == 0
    asked = []
    send = RegistryClient._send

    def counted(self, method, url, headers, **kwargs):
        if self.host == dest.host:
            asked.append((method, urlsplit(url).path))
        return send(self, method, url, headers, **kwargs)

    monkeypatch.setattr(RegistryClient, "_send", counted)
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["images_present"] == 3
    assert len(asked) == 4, asked  # the catalog, and one HEAD per tag


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_bytes_and_rate_on_a_terminal_only(start_registry):
    upstream = start_registry()
    push_image(upstream, "big", "1", [3 * MIB])
    shown = {}
    for name, progress in {
        "terminal": images_cli.Progress(quiet=False, stream=Terminal()),
        "json": images_cli.Progress(quiet=True, stream=Terminal()),
        "pipe": images_cli.Progress(quiet=False, stream=io.StringIO()),
    }.items():
        with progress.bar("registry.k8s.io/big:1") as meter:
            copy_image(RegistrySource(upstream, "big"), "1", start_registry(), "big", "1", Summary(), meter=meter)
        shown[name] = progress.stream.getvalue()
    assert "registry.k8s.io/big:1" in shown["terminal"] and "B/s" in shown["terminal"]
    assert "registry.k8s.io/big:1: 3.00MB in " in shown["terminal"]  # the line left when the bar goes
    assert shown["json"] == shown["pipe"] == ""
