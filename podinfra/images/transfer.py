"""How a blob's bytes move in a copy: read as they stream in and verified against their digest on the way
(`Verified`), never whole in memory, several at once in one bounded pool shared by every copy of a run
(`Transfers`), the first failure stopping them all (`results`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar

from podinfra.images.oci import digest_of
from podinfra.images.registry import RegistryError

TRANSFERS = 4  # blobs in flight at once, over all the images of a run
T = TypeVar("T")


class IntegrityError(RegistryError):
    """Bytes that do not match their digest or size."""


class Cancelled(RegistryError):
    """A copy stopped because another one of the same run failed (or Ctrl-C)."""


def verified(data: bytes, digest: str, size: int | None, what: str) -> bytes:
    actual = digest_of(data)
    if actual != digest or (size is not None and len(data) != size):
        raise IntegrityError(
            f"{what}: expected {digest} ({size} bytes), got {actual} ({len(data)} bytes); refusing it, nothing tagged"
        )
    return data


class Meter(Protocol):
    """Where a copy reports its progress, e.g. a progress bar: bytes to send as they become known, and sent."""

    def add_total(self, n: int) -> None: ...

    def update(self, n: int) -> None: ...


class Verified:
    """A blob read as it streams in, checked against its digest and size on the way: a reader whose
    `read(n)` gives exactly `n` bytes until the end, and raises `IntegrityError` before it hands out the
    last bytes of a blob that does not match (so no upload of it can complete), or of one too short or
    too long. It raises `Cancelled` once `stop` is set.

    >>> data = b"layer"
    >>> Verified(iter([data]), digest_of(data), 5, "blob").read()
    b'layer'
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        digest: str,
        size: int,
        what: str,
        stop: threading.Event | None = None,
        meter: Meter | None = None,
    ):
        self.chunks, self.digest, self.size, self.what = chunks, digest, size, what
        self.stop, self.meter = stop, meter
        self.hash = hashlib.sha256()
        self.received = 0
        self.chunk, self.offset = b"", 0  # the chunk being handed out, and how far
        self.ended = False

    def _pull(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Cancelled(f"{self.what}: stopped")
        chunk = next(self.chunks, b"")
        self.hash.update(chunk)
        self.received += len(chunk)
        if self.meter is not None and chunk:
            self.meter.update(len(chunk))
        if chunk and self.received < self.size:
            self.chunk, self.offset = chunk, 0
            return
        if chunk and self.received == self.size:
            self.received += len(next(self.chunks, b""))  # anything after the last byte is one too many
        self.ended = True
        if self.received != self.size or "sha256:" + self.hash.hexdigest() != self.digest:
            got = f"{self.received} bytes" if self.received != self.size else f"sha256:{self.hash.hexdigest()}"
            raise IntegrityError(
                f"{self.what}: expected {self.digest} ({self.size} bytes), got {got}; refusing it, nothing tagged"
            )
        self.chunk, self.offset = chunk, 0

    def drain(self) -> None:
        """Read to the end only to check the bytes (nothing is kept)."""
        while not self.ended:
            self._pull()
        self.chunk = b""

    def read(self, n: int = -1) -> bytes:
        n = self.size if n < 0 else n
        pieces = []
        while n > 0:
            if self.offset >= len(self.chunk):
                if self.ended:
                    break
                self._pull()
                continue
            # A whole chunk is handed on as it is (a full slice of bytes is the same object): no copy.
            piece = self.chunk[self.offset : self.offset + n]
            self.offset += len(piece)
            n -= len(piece)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class Transfers:
    """The blob copies of one run: at most `workers` at once over all its images, a blob copied once per
    repository however many images list it, and every copy stopped (`stop`) at the first failure.

    Example: ``with Transfers(2) as transfers: copy_image(source, "3.10", dest, "pause", "3.10",
    Summary(), transfers=transfers)``.
    """

    def __init__(self, workers: int = TRANSFERS):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="podinfra-blob")
        self.stop = threading.Event()
        self._started: dict[tuple[str, str, str], Future[str]] = {}
        self._lock = threading.Lock()

    def submit(self, key: tuple[str, str, str], job: Callable[[], str]) -> tuple[Future[str], bool]:
        """The transfer of `key` (registry, repository, digest), started by this call or an earlier one (False)."""
        with self._lock:
            if key in self._started:
                return self._started[key], False
            future = self._started[key] = self.pool.submit(job)
            return future, True

    def __enter__(self) -> Transfers:
        return self

    def __exit__(self, *failure: object) -> None:
        if failure[0] is not None:
            self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def results(futures: Sequence[Future[T]], stop: threading.Event) -> list[T]:
    """Every future's result in order; at the first failure `stop` is set, the others are waited for, and
    the failure that caused it is raised (not the `Cancelled` of the copies it stopped)."""
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and not f.cancelled() and f.exception() for f in futures):
            stop.set()
            wait(futures)
    except BaseException:  # Ctrl-C while waiting
        stop.set()
        raise
    failures = [e for e in (f.exception() for f in futures if not f.cancelled()) if e is not None]
    if failures:
        raise next((e for e in failures if not isinstance(e, Cancelled)), failures[0])
    if any(f.cancelled() for f in futures):
        raise Cancelled("stopped before it started")
    return [f.result() for f in futures]
