import base64
import contextlib
import hashlib
import ipaddress
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta

import bcrypt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from podinfra.data import pki


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca(tmp_path):
    return pki.ensure_ca(tmp_path / "pki")


def test_ca_is_a_self_signed_ca_with_a_private_key(ca):
    cert_path, key_path = ca
    cert = load(cert_path)
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=3000)
    assert mode(key_path) == 0o600 and mode(key_path.parent) == 0o700
    pki.check_cert_and_key(cert_path, key_path)


def test_ca_is_reused(ca):
    before = [p.read_bytes() for p in ca]
    assert pki.ensure_ca(ca[0].parent) == ca
    assert [p.read_bytes() for p in ca] == before
    assert sorted(p.name for p in ca[0].parent.iterdir()) == [".lock", "ca.crt", "ca.key"]


def test_half_a_ca_is_never_replaced(ca):
    ca[0].unlink()
    with pytest.raises(pki.PkiError, match="ca.key exists but .*ca.crt does not"):
        pki.ensure_ca(ca[1].parent)


def test_a_ca_with_the_wrong_key_is_refused(ca, tmp_path):
    other = pki.ensure_ca(tmp_path / "other")
    ca[1].write_bytes(other[1].read_bytes())
    with pytest.raises(pki.PkiError, match="is not the key of"):
        pki.ensure_ca(ca[0].parent)


def test_server_cert_is_signed_by_the_ca_for_exactly_its_names(ca, tmp_path):
    cert_path, key_path = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], ["10.213.0.2"])
    cert = load(cert_path)
    cert.verify_directly_issued_by(load(ca[0]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["registry"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.213.0.2")]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.not_valid_after_utc <= load(ca[0]).not_valid_after_utc
    assert mode(key_path) == 0o600
    pki.check_cert_and_key(cert_path, key_path)


def tls_handshake(cert, key, ca_file, name):
    """TLS version a client that trusts only ca_file gets from a server with cert and key."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    left, right = socket.socketpair()
    server = server_ctx.wrap_socket(left, server_side=True, do_handshake_on_connect=False)

    def accept():
        with contextlib.suppress(OSError):  # the client's refusal
            server.do_handshake()

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname=name) as client:
            return client.version()
    finally:
        right.close()
        thread.join()
        server.close()


def test_tls_clients_accept_the_server_cert_by_name_and_address(ca, tmp_path):
    cert, key = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], ["127.0.0.1"])
    assert tls_handshake(cert, key, ca[0], "registry") in ("TLSv1.2", "TLSv1.3")
    assert tls_handshake(cert, key, ca[0], "127.0.0.1") in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        tls_handshake(cert, key, ca[0], "elsewhere")
    other_ca = pki.ensure_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        tls_handshake(cert, key, other_ca[0], "registry")


def test_server_cert_is_reused_while_it_fits(ca, tmp_path):
    paths = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], ["10.213.0.2"])
    before = [p.read_bytes() for p in paths]
    assert pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], ["10.213.0.2"]) == paths
    assert [p.read_bytes() for p in paths] == before


@pytest.mark.parametrize(
    "change",
    [
        lambda ca, tmp: (ca, ["registry"], ["10.213.0.3"]),
        lambda ca, tmp: (ca, ["registry", "registry.lab"], ["10.213.0.2"]),
        lambda ca, tmp: (pki.ensure_ca(tmp / "other"), ["registry"], ["10.213.0.2"]),
    ],
    ids=["address", "names", "ca"],
)
def test_server_cert_is_reissued_when_it_no_longer_fits(ca, tmp_path, change):
    paths = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], ["10.213.0.2"])
    before = paths[0].read_bytes()
    new_ca, names, ips = change(ca, tmp_path)
    pki.ensure_server_cert(tmp_path / "reg", new_ca, names, ips)
    assert paths[0].read_bytes() != before
    load(paths[0]).verify_directly_issued_by(load(new_ca[0]))
    pki.check_cert_and_key(*paths)


def test_server_cert_is_renewed_before_it_expires(ca, tmp_path, monkeypatch):
    paths = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], [])
    before = paths[0].read_bytes()
    monkeypatch.setattr(pki, "RENEW_BEFORE", timedelta(days=pki.SERVER_DAYS + 1))
    pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], [])
    assert paths[0].read_bytes() != before


def _nginx_checks(password: str, hashed: str) -> bool:
    """What nginx's auth_basic does with an entry: {SSHA} is base64(sha1(password + salt) + salt); $2b$ is bcrypt."""
    if hashed.startswith("{SSHA}"):
        raw = base64.b64decode(hashed[6:])
        return hashlib.sha1(password.encode() + raw[20:]).digest() == raw[:20]
    return bcrypt.checkpw(password.encode(), hashed.encode())


def test_htpasswd_is_bcrypt_for_the_push_user_ssha_for_the_others_and_kept_while_it_verifies(tmp_path):
    users = {"pull": "p1", "push": "p2"}
    path = pki.ensure_htpasswd(tmp_path / "h" / "htpasswd", users, "push")
    entries = dict(line.split(":", 1) for line in path.read_text().splitlines())
    assert entries.keys() == users.keys()
    assert entries["push"].startswith("$2b$10$") and entries["pull"].startswith("{SSHA}")
    assert all(_nginx_checks(users[u], h) for u, h in entries.items())
    assert not _nginx_checks("p2", entries["pull"])
    assert mode(path) == 0o600
    before = path.read_bytes()
    pki.ensure_htpasswd(path, dict(users), "push")
    assert path.read_bytes() == before


def test_an_older_all_bcrypt_htpasswd_is_rewritten_with_ssha_for_the_pull_user(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text(
        "".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
            for u, p in {"pull": "p1", "push": "p2"}.items()
        )
    )
    pki.ensure_htpasswd(path, {"pull": "p1", "push": "p2"}, "push")
    assert dict(line.split(":", 1) for line in path.read_text().splitlines())["pull"].startswith("{SSHA}")


@pytest.mark.parametrize(
    "users", [{"pull": "other"}, {"pull": "p1", "push": "p2", "admin": "p3"}, {"pull": "p1"}], ids=str
)
def test_htpasswd_is_rewritten_when_users_change(tmp_path, users):
    path = pki.ensure_htpasswd(tmp_path / "htpasswd", {"pull": "p1", "push": "p2"}, "push")
    pki.ensure_htpasswd(path, users, "push")
    entries = dict(line.split(":", 1) for line in path.read_text().splitlines())
    assert entries.keys() == users.keys()
    assert all(_nginx_checks(users[u], h) for u, h in entries.items())


@pytest.mark.parametrize(
    ("users", "fix"),
    [
        ({}, "no users"),
        ({"a:b": "x"}, "without ':'"),
        ({"a b": "x"}, "without ':' or spaces"),
        ({"pull": ""}, "1 to 72 bytes"),
        ({"pull": "é" * 37}, "1 to 72 bytes"),
    ],
)
def test_bad_users_name_the_fix(tmp_path, users, fix):
    with pytest.raises(pki.PkiError, match=fix):
        pki.ensure_htpasswd(tmp_path / "htpasswd", users, "push")
    assert not (tmp_path / "htpasswd").exists()


def test_generated_passwords_are_kept(tmp_path):
    path = tmp_path / "users.json"
    first = pki.ensure_passwords(path, ["pull", "push"])
    assert first.keys() == {"pull", "push"} and len(set(first.values())) == 2
    assert all(len(p) >= 20 for p in first.values())
    assert mode(path) == 0o600
    assert pki.ensure_passwords(path, ["pull", "push"]) == first
    assert pki.ensure_passwords(path, ["pull"]) == {"pull": first["pull"]}


def test_cert_and_key_mismatch_is_reported(ca, tmp_path):
    server = pki.ensure_server_cert(tmp_path / "reg", ca, ["registry"], [])
    with pytest.raises(pki.PkiError, match="is not the key of the certificate"):
        pki.check_cert_and_key(server[0], ca[1])


def test_the_pki_is_planned_in_a_scratch_copy_and_written_only_when_committed(tmp_path):
    """What --dry relies on: planning makes nothing in podinfra_pki_dir; the run's commit writes it."""
    directory = tmp_path / "pki"
    work = pki.scratch(directory)
    ca, key = pki.ensure_ca(work)
    pki.ensure_passwords(work / "registry" / "users.json", ["pull", "push"])
    assert not directory.exists()
    assert pki.planned(directory / "ca.crt") == ca
    pending = pki.pending(directory)
    assert pending == [directory / "ca.crt", directory / "ca.key", directory / "registry" / "users.json"]
    pki.commit(directory, pending)
    assert (directory / "ca.key").read_bytes() == key.read_bytes()
    assert (directory / "ca.key").stat().st_mode & 0o777 == 0o600
    assert pki.pending(directory) == [] and pki.planned(directory / "ca.crt") == directory / "ca.crt"
