"""A small OCI distribution client: enough to push, check and read images byte for byte.

oras-py (0.2.x) was looked at first: its `upload_manifest` re-serialises the manifest from a
dict and always sends the OCI manifest media type, so index and Docker-typed manifests would
change digest. Byte-exact copies need the raw bytes end to end, hence this client.

Blobs are never held whole: `blob_chunks` reads one as it arrives and `upload_blob` sends one
from any reader in chunked PATCHes (the distribution spec's chunked upload), so a copy's memory
does not grow with the blob.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from podinfra.errors import PodinfraError
from podinfra.images.oci import ALL_MANIFEST_TYPES, Blob, digest_of

CHUNK = 64 * 1024**2  # bytes per PATCH: one request for most layers, and no proxy sees a body of GBs
READ = 1024**2  # bytes per read of a blob as it streams
CONNECTIONS = 16  # kept open per registry, shared by the copy threads


class RegistryError(PodinfraError, RuntimeError):
    """A registry request failed; the message is one line an operator can act on."""


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class RegistryClient:
    """Talks to one registry, e.g. ``RegistryClient("https://10.0.0.2:5000", ca_file="ca.crt")``.

    Answers 401 challenges itself: Basic with the given credentials, or Bearer by fetching a token
    from the challenge's realm (with the credentials when given, anonymously otherwise). One client
    serves many threads: its connection pool is shared, and Bearer tokens are kept per repository.
    `flags` name the command-line options that set its TLS trust and plain HTTP, for the hints in
    its errors (the source side of a copy has options of its own).
    """

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
        chunk_size: int = CHUNK,
        flags: tuple[str, str | None] = ("--ca-file", "--insecure"),
    ):
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.session = requests.Session()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, _Adapter(pool_connections=4, pool_maxsize=CONNECTIONS))
        # Passed on every request: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = ca_file or True
        self.credentials = (username, password) if username is not None and password is not None else None
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.flags = flags
        # Authorization header by repository; "" holds Basic, good for all of them.
        self._authorization: dict[str, str] = {}

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        headers = {**headers, **self._auth_for(url)}
        try:
            return self.session.request(
                method, url, headers=headers, timeout=self.timeout, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryError(self._tls_hint(exc)) from exc
        except requests.ConnectionError as exc:
            raise RegistryError(
                f"registry {self.host} is unreachable: check the address and that it is running"
            ) from exc
        except requests.Timeout as exc:
            raise RegistryError(f"registry {self.host} did not answer in {self.timeout:.0f}s") from exc
        except requests.RequestException as exc:
            raise RegistryError(f"request to registry {self.host} failed: {exc.__class__.__name__}") from exc

    def _tls_hint(self, exc: Exception) -> str:
        ca_flag, insecure_flag = self.flags
        reason = _reason(exc)
        if reason in ("wrong version number", "record layer failure", "packet length too long"):
            then = f"then pass {insecure_flag}" if insecure_flag else "which podinfra reads only from --source"
            return f"TLS to {self.host} failed ({reason}): it may speak plain HTTP; {then}"
        return f"TLS to {self.host} failed ({reason}): pass the registry's CA with {ca_flag}"

    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        response = self._send(method, url, headers or {}, **kwargs)
        if response.status_code == 401 and isinstance(kwargs.get("data"), Window):
            # A streamed body cannot be sent twice; the upload's POST met the challenge, so this is a token
            # that ran out mid-upload.
            raise RegistryError(f"registry {self.host} refused authentication in the middle of an upload: run again")
        if response.status_code == 401 and self._answer(response.headers.get("WWW-Authenticate", ""), url):
            response = self._send(method, url, headers or {}, **kwargs)
        if response.status_code == 401:
            hint = "check the username and password" if self.credentials else "it needs credentials: --username"
            raise RegistryError(f"registry {self.host} refused authentication: {hint}")
        if response.status_code == 400 and url.startswith("http:") and b"HTTPS server" in response.content[:200]:
            raise RegistryError(f"registry {self.host} speaks HTTPS, not plain HTTP: leave out {self.flags[1]}")
        return response

    def _answer(self, challenge: str, url: str) -> bool:
        """Set the Authorization header a 401 challenge asks for; False when it cannot be met."""
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials:
            self._authorization[""] = requests.auth._basic_auth_str(*self.credentials)
            return True
        if scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            if "realm" not in fields:
                return False
            self._authorization[_repository(url)] = f"Bearer {self._token(fields)}"
            return True
        return False

    def _token(self, fields: dict[str, str]) -> str:
        """A token from the challenge's realm, or one line naming the realm and what it answered."""
        realm = fields["realm"]
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        try:
            reply = self.session.get(
                realm, params=query, auth=self.credentials, timeout=self.timeout, verify=self.verify
            )
        except requests.RequestException as exc:
            raise RegistryError(
                f"token server {realm} of registry {self.host} is unreachable ({_reason(exc)})"
            ) from exc
        if reply.status_code in (401, 403):
            hint = "check the username and password" if self.credentials else "it needs credentials: --username"
            raise RegistryError(f"registry {self.host} refused authentication: {hint} (token server {realm})")
        if reply.status_code != 200:
            raise RegistryError(f"token server {realm} of registry {self.host} answered HTTP {reply.status_code}")
        try:
            body = reply.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            raise RegistryError(f"token server {realm} of registry {self.host} did not answer JSON") from None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {realm} of registry {self.host} answered no token")
        return token

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code >= 400:
            codes = _error_codes(response)
            detail = f" ({', '.join(codes)})" if codes else ""
            raise RegistryError(f"{what}: HTTP {response.status_code}{detail} from {self.host}")
        return response

    def _location(self, response: requests.Response, what: str) -> str:
        """Where an upload goes on: every answer may move it, and the address may be relative."""
        if "Location" not in response.headers:
            raise RegistryError(f"{what}: registry {self.host} gave no upload location")
        return urljoin(response.url, response.headers["Location"])

    def ping(self) -> bool:
        try:
            return self._request("GET", "/v2/").status_code == 200
        except RegistryError:
            return False

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest the registry holds for `reference`, or None when it holds none."""
        response = self._request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        )
        return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None

    def repositories(self) -> list[str]:
        """The registry's catalog, or [] where it does not offer one (it is optional in the spec)."""
        response = self._request("GET", "/v2/_catalog?n=1000")
        try:
            return list(response.json().get("repositories", [])) if response.status_code == 200 else []
        except (ValueError, AttributeError, TypeError):
            return []

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: the registry links a blob it already holds, nothing is sent."""
        response = self._request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}")
        if response.status_code == 202 and "Location" in response.headers:
            # The registry opened an upload instead; close it so no session is left behind.
            self._request("DELETE", urljoin(response.url, response.headers["Location"]))
        return response.status_code == 201

    def upload_blob(self, repo: str, digest: str, size: int, body: Reader) -> None:
        """Send `size` bytes read from `body` as the blob `digest`: POST, then PATCHes of `chunk_size` bytes
        (Content-Range) while more than a chunk is left, then PUT ?digest= with the rest, following the
        upload's location as each answer moves it (a blob of one chunk is POST and PUT alone). On any
        failure the upload is cancelled (DELETE), so nothing of it is committed; the registry checks the
        digest itself before it commits: ``client.upload_blob("pause", digest, len(data), io.BytesIO(data))``.
        """
        what = f"upload {digest} to {repo}"
        start = self._check(self._request("POST", f"/v2/{repo}/blobs/uploads/"), f"start upload to {repo}")
        location = self._location(start, what)
        # A registry may ask for chunks of at least some size (OCI-Chunk-Min-Length).
        chunk = max(self.chunk_size, int(start.headers.get("OCI-Chunk-Min-Length", "0") or 0))
        octets = {"Content-Type": "application/octet-stream"}
        try:
            offset = 0
            while size - offset > chunk:
                headers = {**octets, "Content-Range": f"{offset}-{offset + chunk - 1}"}
                patched = self._check(self._request("PATCH", location, headers, data=Window(body, chunk)), what)
                location = self._location(patched, what)
                offset += chunk
            separator = "&" if "?" in location else "?"
            last = Window(body, size - offset)
            self._check(self._request("PUT", f"{location}{separator}digest={digest}", octets, data=last), what)
        except BaseException:
            self._cancel(location)
            raise

    def _cancel(self, location: str) -> None:
        # When the registry is gone, its unreferenced upload is purged on its own schedule.
        with contextlib.suppress(requests.RequestException):
            self.session.delete(location, timeout=5, verify=self.verify, headers=self._auth_for(location))

    def _auth_for(self, url: str) -> dict[str, str]:
        authorization = self._authorization.get(_repository(url)) or self._authorization.get("")
        return {"Authorization": authorization} if authorization else {}

    def push_blob(self, repo: str, data: bytes, digest: str | None = None) -> int:
        """Upload `data` unless present; returns the bytes sent (0 when skipped). For small blobs."""
        digest = digest or digest_of(data)
        if self.blob_exists(repo, digest):
            return 0
        self.upload_blob(repo, digest, len(data), io.BytesIO(data))
        return len(data)

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        """PUT a manifest's exact bytes. While another client commits the same blob, distribution
        briefly answers MANIFEST_BLOB_UNKNOWN for it; that answer is retried a few times."""
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6, None):
            response = self._request(
                "PUT",
                f"/v2/{repo}/manifests/{reference}",
                data=manifest.data,
                headers={"Content-Type": manifest.media_type},
            )
            if delay is None or "MANIFEST_BLOB_UNKNOWN" not in _error_codes(response):
                break
            time.sleep(delay)
        self._check(response, f"push manifest {repo}:{reference}")

    def get_manifest(self, repo: str, reference: str) -> Blob:
        response = self._check(
            self._request(
                "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
            ),
            f"get manifest {repo}:{reference}",
        )
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Blob(media_type, response.content)

    def blob_chunks(self, repo: str, digest: str) -> Iterator[bytes]:
        """A blob's bytes as they arrive, in pieces of about `READ` bytes; the connection goes back to
        the pool when the iterator is exhausted or closed. A connection that breaks is one line."""
        response = self._check(self._request("GET", f"/v2/{repo}/blobs/{digest}", stream=True), f"get blob {digest}")
        with response:
            try:
                yield from response.iter_content(READ)
            except requests.RequestException as exc:
                raise RegistryError(f"registry {self.host} broke off sending {digest} ({_reason(exc)})") from exc

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A whole blob in memory: for small ones (tests)."""
        return b"".join(self.blob_chunks(repo, digest))


class _Adapter(HTTPAdapter):
    """Bodies sent a `READ` at a time (urllib3 sends 16 KiB blocks by default: 64 times the calls)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, blocksize=READ, **kwargs)


class Window:
    """The next `length` bytes of a reader, as a request body of known length (requests sends it
    with Content-Length, reading it a block at a time)."""

    def __init__(self, reader: Reader, length: int):
        self.reader, self.left, self.length = reader, length, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(READ):
            yield block

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.reader.read(n) if n else b""
        if n and len(data) < n:
            raise RegistryError(f"the blob ended {self.left - len(data)} bytes short")
        self.left -= len(data)
        return data


def _repository(url: str) -> str:
    """The repository a request is about ("" for the registry itself), e.g. "lib/pause" for
    /v2/lib/pause/blobs/uploads/."""
    match = re.search(r"/v2/(.+?)/(?:blobs|manifests|tags)/", urlsplit(url).path)
    return match[1] if match else ""


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in (
        "certificate verify failed: unable to get local issuer certificate",
        "self-signed certificate",
        "certificate verify failed",
        "hostname mismatch",
        "wrong version number",
        "record layer failure",
        "packet length too long",
    ):
        if known in text:
            return known
    return exc.__class__.__name__


_tag_digests: dict[tuple[str | None, ...], str | RegistryError] = {}


def tag_digest(
    base_url: str,
    repo: str,
    tag: str,
    ca_file: str | None,
    username: str | None,
    password: str | None,
    phase: str = "plan",
) -> str:
    """The digest `tag` names in a registry, asked once per run and `phase` however many nodes need it (a
    failure too: an unreachable registry costs one timeout, not one per node). A pyinfra run asks when it
    plans and may ask again when it executes, after operations that made or filled the registry."""
    key = (phase, base_url, repo, tag, ca_file, username, password)
    if key not in _tag_digests:
        client = RegistryClient(base_url, ca_file=ca_file, username=username, password=password)
        try:
            digest = client.manifest_digest(repo, tag)
            _tag_digests[key] = digest or RegistryError(
                f"{client.host}/{repo}:{tag} is not in the registry: mirror it first (deploys/mirror.py)"
            )
        except RegistryError as e:
            _tag_digests[key] = e
    answer = _tag_digests[key]
    if isinstance(answer, RegistryError):
        raise answer
    return answer


def _error_codes(response: requests.Response) -> list[str]:
    """The distribution spec's error codes in a response body, e.g. ["MANIFEST_BLOB_UNKNOWN"]."""
    try:
        return [str(error.get("code")) for error in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []
