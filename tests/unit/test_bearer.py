"""Bearer-token auth against a real docker-registry configured for token auth.

The token server is the test's own: it checks Basic credentials and signs an ES256 JWT whose
x5c certificate the registry trusts through `rootcertbundle`, granting what the scope asks.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from podinfra import cli
from podinfra.images.registry import RegistryClient, RegistryError
from podinfra.lab import pause
from podinfra.lab.upstream import LoopbackRegistry, free_port

USER, PASSWORD, SERVICE, ISSUER = "mirror", "s3cret", "podinfra-test", "podinfra-test-issuer"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip

    def token(self, scope: str) -> str:
        access = []
        for item in filter(None, scope.split(" ")):
            kind, name, actions = item.rsplit(":", 2)[0].split(":", 1)[0], item.split(":")[1], item.split(":")[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": str(uuid.uuid4()), "access": access}  # fmt: skip
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _challenges(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 401
    except requests.ConnectionError:
        return False


@pytest.fixture
def token_registry(tmp_path):
    issuer = Issuer()
    requests_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
            requests_seen.append(scope)
            body = json.dumps({"token": issuer.token(scope)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundle = tmp_path / "root.crt"
    bundle.write_bytes(issuer.cert.public_bytes(serialization.Encoding.PEM))
    registry = LoopbackRegistry(
        tmp_path,
        extra=f"auth:\n  token:\n    realm: http://127.0.0.1:{server.server_port}/token\n"
        f"    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
    )
    try:
        with registry.start(ready=lambda: _challenges(f"{registry.url}/v2/")):
            yield registry.addr, requests_seen
    finally:
        server.shutdown()


def test_mirror_answers_bearer_challenges_with_a_token(capsys, token_registry, registry, tmp_path):
    host, scopes = token_registry
    pause.publish(registry, tmp_path / "pause")
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    code = cli.main(
        ["mirror", "--source", registry.host, "--source-insecure", "--kubernetes-version", "1.31", "--to", host,
         "--insecure", "--username", USER, "--password-file", str(password), "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["blobs_uploaded"] == 4
    assert any(s.startswith("repository:pause:") and "push" in s for s in scopes)
    assert PASSWORD not in out.out + out.err


def test_wrong_password_for_the_token_server_is_a_clear_error(token_registry):
    host, _ = token_registry
    client = RegistryClient(f"http://{host}", username=USER, password="wrong")
    with pytest.raises(RegistryError, match="refused authentication: check the username and password"):
        client.get_manifest("pause", "3.10")


@pytest.fixture
def bad_token_server():
    """A registry that asks for a Bearer token, and a token server whose answer `mode` spoils."""
    state = {"mode": "no token"}

    class Token(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status, body = {
                "no token": (200, b'{"expires_in": 300}'),
                "not JSON": (200, b"<html>sign in</html>"),
                "null token": (200, b'{"token": null}'),
                "HTTP error": (500, b"oops"),
            }[state["mode"]]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    tokens = ThreadingHTTPServer(("127.0.0.1", 0), Token)
    realm = f"http://127.0.0.1:{tokens.server_port}/token"

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="reg",scope="repository:pause:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    registry = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    for server in (tokens, registry):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield RegistryClient(f"http://127.0.0.1:{registry.server_port}"), realm, state
    finally:
        tokens.shutdown()
        registry.shutdown()


@pytest.mark.parametrize(
    ("mode", "says"),
    [("no token", "answered no token"), ("null token", "answered no token"), ("not JSON", "did not answer JSON"),
     ("HTTP error", "answered HTTP 500")],
)  # fmt: skip
def test_a_malformed_token_reply_is_one_line_naming_the_realm(bad_token_server, mode, says):
    client, realm, state = bad_token_server
    state["mode"] = mode
    with pytest.raises(RegistryError) as failure:
        client.get_manifest("pause", "3.10")
    message = str(failure.value)
    assert message == f"token server {realm} of registry {client.host} {says}"
    assert "Bearer None" not in client._authorization.values()


def test_an_unreachable_token_server_is_one_line_naming_it(bad_token_server):
    client, _, _ = bad_token_server
    gone = f"http://127.0.0.1:{free_port()}/token"
    with pytest.raises(RegistryError, match=rf"^token server {gone} of registry {client.host} is unreachable"):
        client._token({"realm": gone, "scope": "repository:pause:pull"})
