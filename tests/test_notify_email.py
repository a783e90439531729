"""The email driver against a real SMTP server (aiosmtpd) on 127.0.0.1: plain, auth, STARTTLS, TLS."""

from __future__ import annotations

import datetime
import email
import ipaddress
import ssl
import uuid
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from support.ports import free_port

from nodes.base import NodeContext, RunInfo
from nodes.errors import DeliveryError
from nodes.notify import email as driver
from nodes.notify.message import build_message

PASSWORD = "smtp-Pa55word-xyz"


class Recorder:
    def __init__(self, refuse: set[str] | None = None):
        self.envelopes = []
        self.refuse = refuse or set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def serve(handler, **kwargs) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made here (no network, no files from outside)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    return str(cert_file), server_context


def make_ctx(status="open") -> NodeContext:
    incident = {
        "id": 3,
        "key": "grp-1",
        "status": status,
        "severity": "critical",
        "title": "HighMemory",
        "firing_count": 2 if status == "open" else 0,
        "alerts": [
            {"status": "firing", "title": "HighMemory", "labels": {"alertname": "HighMemory", "instance": h}}
            for h in ("web-01", "db-01")
        ],
    }
    return NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage"), incident=incident)


def send(port: int, ctx: NodeContext | None = None, **overrides):
    ctx = ctx or make_ctx()
    settings = {
        "to": ["oncall@example.com", "boss@example.com"],
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "ops@example.com",
        **overrides,
    }
    config = driver.Config.model_validate(settings)
    return driver.send(config, build_message(ctx, message="<b>db-01</b> memory 97 %"), ctx)


def parse(envelope):
    return email.message_from_bytes(envelope.content, policy=policy.default)


def test_plain_smtp_multipart_with_alertmanager_subject():
    handler = Recorder()
    controller = serve(handler)
    try:
        record = send(controller.port)
    finally:
        controller.stop()
    assert record["status"] == "delivered" and record["recipients"] == 2
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "ops@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "boss@example.com"]
    mail = parse(envelope)
    assert mail["Subject"] == "[FIRING:2] HighMemory (db-01 web-01)"
    assert mail["Message-ID"] == record["message_id"] and mail["References"].startswith("<incident-")
    assert "<b>db-01</b>" in mail.get_body(("plain",)).get_content()
    assert "&lt;b&gt;db-01&lt;/b&gt;" in mail.get_body(("html",)).get_content()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_from_environment_and_resolved_subject(monkeypatch):
    handler = Recorder()
    controller = serve(handler, authenticator=authenticator, auth_require_tls=False, auth_required=True)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(controller.port))
    monkeypatch.setenv("SMTP_USERNAME", "ops")
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SMTP_FROM", "alerts@example.com")
    ctx = make_ctx("resolved")
    try:
        config = driver.Config.model_validate({"to": "oncall@example.com", "security": "none"})
        record = driver.send(config, build_message(ctx), ctx)
    finally:
        controller.stop()
    assert PASSWORD in ctx.secrets and PASSWORD not in str(record)
    mail = parse(handler.envelopes[0])
    assert mail["From"] == "alerts@example.com" and mail["Subject"] == "[RESOLVED] HighMemory (db-01 web-01)"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_fails_at_once_without_the_password():
    controller = serve(Recorder(), authenticator=authenticator, auth_require_tls=False, auth_required=True)
    try:
        with pytest.raises(DeliveryError) as err:
            send(controller.port, username="ops", password="not-the-password")
    finally:
        controller.stop()
    assert not err.value.retryable and "login refused" in err.value.message
    assert "not-the-password" not in err.value.message


def test_refused_recipients():
    controller = serve(Recorder(refuse={"boss@example.com"}))
    try:
        record = send(controller.port)
        with pytest.raises(DeliveryError) as err:
            send(controller.port, to=["boss@example.com"])
    finally:
        controller.stop()
    assert record["refused"] == ["boss@example.com"] and record["recipients"] == 1
    assert not err.value.retryable and "550" in err.value.message


def test_connection_refused_is_retryable():
    with pytest.raises(DeliveryError) as err:
        send(free_port(), timeout_seconds=2)
    assert err.value.retryable


def test_starttls(cert):
    ca_file, server_context = cert
    handler = Recorder()
    controller = serve(
        handler,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    try:
        record = send(
            controller.port, security="starttls", ca_file=ca_file, username="ops", password=PASSWORD
        )
        with pytest.raises(DeliveryError) as err:  # our own CA is not in the default trust store
            send(controller.port, security="starttls", username="ops", password=PASSWORD)
    finally:
        controller.stop()
    assert record["status"] == "delivered" and len(handler.envelopes) == 1
    assert "not trusted" in err.value.message and not err.value.retryable


def test_implicit_tls(cert):
    ca_file, server_context = cert
    handler = Recorder()
    controller = serve(handler, ssl_context=server_context)
    try:
        send(controller.port, security="ssl", ca_file=ca_file)
    finally:
        controller.stop()
    assert parse(handler.envelopes[0])["Subject"].startswith("[FIRING:2]")


def test_starttls_against_a_server_without_it():
    controller = serve(Recorder())
    try:
        with pytest.raises(DeliveryError) as err:
            send(controller.port, security="starttls")
    finally:
        controller.stop()
    assert not err.value.retryable and "STARTTLS" in err.value.message
