"""Loopback fakes for the secrets sweep: one recording HTTP server for every model and
notification API, and an SMTP server that records each login.

Paths under `/fail/` answer with an error that echoes every credential the request carried
(the worst an upstream API can do), so error paths are swept as hard as the happy one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pytest_httpserver import HTTPServer
from support.ports import free_port
from werkzeug import Request, Response

AI_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ai"
ANALYSIS = {
    "summary": "Disk on db-01 is nearly full.",
    "probable_cause": "Log rotation stopped after the last deploy.",
    "severity": "warning",
    "recommendations": [{"title": "Rotate logs", "description": "logrotate -f", "priority": "high"}],
}
REFUSED_SMTP_USER = "sweep-refused-user"
LLM_PATHS = ("/v1/chat/completions", "/v1/messages")


# -- the HTTP fake ----------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    def text(self) -> str:
        return json.dumps({"path": self.path, "headers": self.headers, "body": self.body})


@dataclass
class FakeApis:
    """Every upstream API on one loopback port; `received` holds each request as it arrived."""

    server: HTTPServer
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> FakeApis:
        # werkzeug logs each request line, credentials in the path included: keep failures readable
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = HTTPServer(host="127.0.0.1", port=0)
        fake = cls(server)
        server.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
        server.start()
        return fake

    def stop(self) -> None:
        self.server.clear()
        self.server.stop()

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def to(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]

    def llm_requests(self) -> list[Received]:
        """What the fake model APIs received (OpenAI, OpenAI-compatible, Anthropic)."""
        return [r for r in self.received if r.path.removeprefix("/fail").startswith(LLM_PATHS)]

    def handle(self, request: Request) -> Response:
        record = Received(request.method, request.path, dict(request.headers), request.get_data(as_text=True))
        with self.lock:
            self.received.append(record)
        route = request.path.removeprefix("/fail")
        if route != request.path:
            return _echo_error(route, record)
        if route == "/v1/chat/completions":
            return _json(_completion())
        if route == "/v1/messages":
            return _json(_claude())
        if route.startswith("/slack/api/"):
            return _json({"ok": True, "channel": "C0SWEEP", "ts": "1700000000.000100"})
        if route.startswith("/pagerduty/"):
            return _json({"status": "success", "message": "Event processed", "dedup_key": "sweep"}, 202)
        if route.startswith("/teams/"):
            return Response("", status=202)
        if route.startswith("/discord/"):
            return Response("", status=204)
        return Response("ok", status=200, content_type="text/plain")


def auth(request: Received) -> str:
    """The credential header a request carried (`Authorization` or Anthropic's `x-api-key`)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return headers.get("authorization") or headers.get("x-api-key") or ""


def _json(data: dict, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


def _completion() -> dict:
    body = json.loads((AI_FIXTURES / "openai-chat-completions-response-structured.json").read_text())
    body["choices"][0]["message"]["content"] = json.dumps(ANALYSIS)
    return body


def _claude() -> dict:
    body = json.loads((AI_FIXTURES / "anthropic-messages-response.json").read_text())
    body["content"][0]["text"] = json.dumps(ANALYSIS)
    return body


def _echo_error(route: str, record: Received) -> Response:
    """The request's credentials echoed back in the API's own error shape, not retryable."""
    creds = " ".join(
        f"{name}={value}"
        for name, value in record.headers.items()
        if name.lower() in ("authorization", "x-api-key", "x-sweep-token")
    )
    echo = f"rejected {creds} path={record.path} body={record.body[:400]}"
    if route == "/v1/chat/completions":
        error = {"message": f"Incorrect API key provided: {echo}", "type": "invalid_request_error"}
        return _json({"error": {**error, "code": "invalid_api_key"}}, 401)
    if route == "/v1/messages":
        return _json({"type": "error", "error": {"type": "authentication_error", "message": echo}}, 401)
    if route.startswith("/slack/api/"):
        return _json({"ok": False, "error": f"invalid_auth {echo}"})
    return Response(echo, status=400, content_type="text/plain")


# -- the SMTP fake ----------------------------------------------------------------------------


class SmtpFake:
    """aiosmtpd on loopback: AUTH over plain SMTP, logins recorded, REFUSED_SMTP_USER refused."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []
        self.messages: list[str] = []
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=free_port(),
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=False,
        )

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> SmtpFake:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login[0] != REFUSED_SMTP_USER, handled=False)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope.content.decode(errors="replace"))
        return "250 OK"
