"""Fuzzing the alert receiver: whatever a sender does, the answer is a documented status with a JSON error.

Random bodies (bytes, broken UTF-8 and JSON, deep nesting, huge numbers, NaN, lists,
real and mutated alert payloads, execute requests, definitions), random Content-Type,
Content-Length, Authorization, Idempotency-Key and X-PagerDuty-Signature headers and
query strings go to POST /pipeline, /definitions/{name}/execute and /validate of the
app, in process. Each answer is compared with what the contract says (DESIGN: alert
receiver): 401 bad token, 400 bad JSON, 404 unknown definition, 413 over 1 MiB, 415
not JSON, 200 for a validation, and 503 with Retry-After for a request that passed
every check: those reach a fake Prefect API on 127.0.0.1 that finds the deployment
and then fails the flow run with HTTP 500, so no run is ever created. Never 500,
never a traceback, never an HTML page, never the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from fuzz_settings import FEW, MANY
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.alert_fuzz import JUNK, TEXT, mutated

from deployments.receiver import create_app
from deployments.receiver.http import MAX_BODY_BYTES, MAX_DEPTH, is_json
from deployments.receiver.models import ExecuteRequest
from nodes.ingest import FORMATS

pytestmark = pytest.mark.timeout(300)


TOKEN = "fuzz-t0ken-8e2b4f6a"
ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "definitions"
# NAMES: what find_definition accepts
NAMES = sorted(p.stem for p in DEFINITIONS.glob("*.json") if p.stem != "schema")
# ... and of those, what the routes may run: a definition declaring a webhook trigger (else 403)
WEBHOOK_NAMES = {
    name
    for name in NAMES
    if {"webhook": {}} in json.loads((DEFINITIONS / f"{name}.json").read_text()).get("triggers", [])
}
INBOUND = sorted((ROOT / "tests" / "fixtures" / "inbound").glob("*.json"))
MIB = MAX_BODY_BYTES


class FakePrefect(BaseHTTPRequestHandler):
    """Finds every deployment, then fails every flow run with HTTP 500: the receiver must answer 503."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # or each answer waits for a delayed ACK (40 ms)
    counts: dict[str, int] = {}

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.command == "GET" and self.path.startswith("/api/deployments/name/run-pipeline/"):
            self._send(
                200,
                {"id": str(uuid.uuid4()), "name": self.path.rsplit("/", 1)[1], "flow_id": str(uuid.uuid4())},
            )
        elif self.command == "GET" and self.path.startswith("/api/csrf-token"):
            self._send(404, {"detail": "Not Found"})  # a server without CSRF protection
        elif self.command == "POST" and self.path.endswith("/create_flow_run"):
            self._count("create_flow_run")
            try:
                parameters = json.loads(body)["parameters"]
                assert parameters["definition"] in NAMES and isinstance(parameters["payload"], dict)
            except (ValueError, KeyError, TypeError, AssertionError):
                self._count("malformed")
            self._send(500, {"detail": "fake Prefect: no flow runs here"})
        else:
            self._count("unexpected")
            self._send(500, {"detail": f"fake Prefect does not serve {self.command} {self.path}"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def fake_prefect():
    FakePrefect.counts = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrefect)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FakePrefect.counts, f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class InProcess:
    """The receiver app, its lifespan entered, and an httpx client calling it on one event loop."""

    def __init__(self, api_url: str) -> None:
        self.app = create_app(api_url, timeout=30, concurrency=4)
        self.loop = asyncio.new_event_loop()
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://receiver.test")

    def send(self, method: str, url: str, headers: list, content) -> httpx.Response:
        return self.loop.run_until_complete(
            self.client.request(method, url, headers=headers, content=content)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def receiver(fake_prefect):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSFLOW_RECEIVER_TOKEN", TOKEN)
        app = InProcess(fake_prefect[1])
    yield app
    app.close()


# --- requests -------------------------------------------------------------------------------------

# what an HTTP server lets through in a header value: visible ASCII, Latin-1, space and tab
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24
).map(lambda s: s.strip(" \t").encode("latin-1"))
GOOD_AUTHORIZATIONS = [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "]
BAD_AUTHORIZATIONS = [
    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN.upper()}", f"Basic {TOKEN}", TOKEN, "Bearer",
    "Bearer ", "", f"Bearer{TOKEN}",
]  # fmt: skip
GOOD_AUTHORIZATION = st.sampled_from(GOOD_AUTHORIZATIONS).map(str.encode)
# the right token half the time, so that what comes after the token check is fuzzed too
AUTHORIZATIONS = st.one_of(
    GOOD_AUTHORIZATION, GOOD_AUTHORIZATION, st.sampled_from(BAD_AUTHORIZATIONS).map(str.encode), HEADER_TEXT
)
GOOD_CONTENT_TYPES = [
    b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON",
    b"application/vnd.pagerduty+json", b"application/merge-patch+json",
]  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    [
        *GOOD_CONTENT_TYPES, b"text/plain", b"application/x-www-form-urlencoded", b"json",
        b"application/jsonx", b"+json", b"/+json", b"", b"multipart/form-data; boundary=x",
        b"application/json\xa0", b"application/json;",
    ]
) | HEADER_TEXT  # fmt: skip
CONTENT_LENGTHS = st.sampled_from(
    [
        b"0", b"2", b"-1", b"1e3", b"\xb2", b"\xb9\xb2", b"abc", b"", b"00000000000000000000017", b"1048576",
        b"1048577", b"9" * 30, b"9" * 5000,
    ]
) | HEADER_TEXT  # fmt: skip


def _deep(depth: int) -> bytes:
    """An object holding `depth` nested arrays: `depth + 1` levels."""
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


# bodies that are not a JSON object, or not JSON, or not text; and bodies right at the limits
RAW_BODIES = st.sampled_from(
    [
        b"", b" \r\n\t", b"\x0b", b"{", b"}", b"{}", b"[1, 2]", b'"text"', b"null", b"1", b"true", b"NaN",
        b"-Infinity", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": 1e308}',
        b"1" * 5000, b'{"a": ' + b"9" * 4301 + b"}", b'{"a": ' + b"9" * 4300 + b"}", b'{"a": "\\ud800"}',
        b'{"a": "\\udfff\\ud800"}', b'{"a": "\\ud83d\\ude00"}', b'{"a": "\\\\ud800"}', b'{"\\ud800": 1}',
        b'{"a": "\\u0000"}', b'\xef\xbb\xbf{"a": 1}', b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}',
        b"\xff\xfe{\x00}", b'{"a": 1,}', b'{"a" 1}', b"{'a': 1}", b'{"a": 1}{"b": 2}', b'{"a": 1} x',
        b'{"a": 1}\n', b'[{"title": "x"}]', _deep(MAX_DEPTH - 2), _deep(MAX_DEPTH - 1), _deep(MAX_DEPTH),
        _deep(500), _deep(990), _deep(5000), b"[" * 100_000, b'{"title": "' + b"x" * (MIB - 14) + b'"}',
        b'{"title": "' + b"x" * (MIB - 13) + b'"}', b" " * (MIB + 1),
    ]
)  # fmt: skip


def _encode(value) -> bytes:
    """JSON as a careless sender writes it: NaN and escaped lone surrogates included."""
    return json.dumps(value, default=lambda b: b.decode("latin-1")).encode("utf-8")


SHAPED = st.sampled_from(sorted(FORMATS)).flatmap(mutated)
FIXTURE_BODIES = st.sampled_from([p.read_bytes() for p in INBOUND])
# the formats' own fuzzing (test_ingest_fuzz) goes deep; here half the alerts are the real thing
ALERT_BODIES = st.one_of(
    FIXTURE_BODIES, FIXTURE_BODIES, SHAPED.map(_encode), st.dictionaries(TEXT, JUNK, max_size=4).map(_encode)
)
EXECUTE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "payload": SHAPED | SHAPED | JUNK,
        "source": st.sampled_from(["api", "cron", "x" * 64, "x" * 65]) | JUNK,
        "trace_id": st.sampled_from(["t-1", "x" * 128, "x" * 129, None]) | JUNK,
        "environment": st.sampled_from(["production", "", None]) | JUNK,
        "incident_id": st.sampled_from(["42", None]) | JUNK,
        "extra": JUNK,
    },
).map(_encode)
NODE_KEYS = st.sampled_from(["id", "type", "config", "next", "when"])
DEFINITION_BODIES = st.sampled_from(
    [p.read_bytes() for p in DEFINITIONS.glob("*.json")]
) | st.fixed_dictionaries(
    {"version": st.sampled_from(["1.0", 1]), "nodes": st.lists(st.dictionaries(NODE_KEYS, JUNK), max_size=3)}
).map(_encode)
# each route mostly gets its own kind of body, and sometimes any other
BODIES = {
    "pipeline": st.one_of(
        ALERT_BODIES, ALERT_BODIES, ALERT_BODIES, RAW_BODIES, EXECUTE_BODIES, st.binary(max_size=40)
    ),
    "execute": st.one_of(
        EXECUTE_BODIES, EXECUTE_BODIES, EXECUTE_BODIES, RAW_BODIES, ALERT_BODIES, st.binary(max_size=40)
    ),
    "validate": st.one_of(
        DEFINITION_BODIES, DEFINITION_BODIES, RAW_BODIES, ALERT_BODIES, st.binary(max_size=40)
    ),
}
NAME_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
# definition names: near misses, and the path tricks a name must never turn into
ODD_NAMES = st.sampled_from(
    [
        "nope", "", ".", "..", ".hidden", "alert-triage.json", "../definitions/alert-triage", "a/b", "a\\b",
        "/etc/passwd", "alert-triage\x00", "x" * 128, "x" * 129, "ALERT-TRIAGE", " alert-triage", "schema",
    ]
) | NAME_TEXT  # fmt: skip
QUERY_JUNK = st.sampled_from(
    ["a=%ff", "definition=%ED%A0%80", "=", "&&", "definition", "x=%", "definition=%00", "definition=+x"]
) | NAME_TEXT.map(lambda t: quote(t, safe="") + "=1")


@st.composite
def requests(draw) -> dict:
    """One request; half are sane (token, JSON type, known name) so that bodies get judged too."""
    route = draw(st.sampled_from(["pipeline", "pipeline", "execute", "validate"]))
    sane = draw(st.booleans())
    names = st.sampled_from(NAMES) if sane else st.sampled_from(NAMES) | ODD_NAMES
    name = draw(names)
    query: list[str] = []
    if route == "pipeline":
        path = "/pipeline"
        for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
            query.append("definition=" + quote(draw(names), safe=""))
    else:  # dots escaped too, or the client would resolve `..` before sending
        path = f"/definitions/{quote(name, safe='').replace('.', '%2E')}/{route}"
    if not draw(st.integers(0, 3)):
        query.append(draw(QUERY_JUNK))
    headers: list[tuple[bytes, bytes]] = []
    if sane:
        headers.append((b"authorization", draw(st.sampled_from(GOOD_AUTHORIZATIONS)).encode()))
        headers.append((b"content-type", draw(st.sampled_from(GOOD_CONTENT_TYPES))))
    else:  # each header absent one time in eight, and often wrong
        if draw(st.integers(0, 7)):
            headers.append((b"authorization", draw(AUTHORIZATIONS)))
        if draw(st.integers(0, 7)):
            headers.append((b"content-type", draw(st.sampled_from(GOOD_CONTENT_TYPES) | CONTENT_TYPES)))
    extra = draw(st.integers(0, 63))  # one draw for which of the rarer headers are there
    if extra & 7 == 7:
        headers.append((b"content-length", draw(CONTENT_LENGTHS)))
    if extra & 8:
        headers.append((b"idempotency-key", draw(HEADER_TEXT | st.just(b"k" * 1000))))
    if extra & 16:
        headers.append((b"x-pagerduty-signature", draw(HEADER_TEXT | st.just(b"v1=" + b"0" * 64))))
    if extra & 32 and not draw(st.integers(0, 7)):
        headers.append((b"content-type", draw(CONTENT_TYPES)))  # a second one: the first one counts
    return {
        "route": route,
        "name": name,
        "path": path,
        "query": "&".join(query),
        "headers": headers,
        "body": draw(BODIES[route]),
        "streamed": not draw(st.integers(0, 9)),  # chunked, no Content-Length unless one was drawn
    }


# --- the contract ---------------------------------------------------------------------------------

BAD = object()


def strict_json(body: bytes):
    """The body's JSON value, or BAD: not UTF-8, not JSON, NaN/Infinity, out of a double's range,
    a lone surrogate, or nested deeper than MAX_DEPTH."""
    try:
        text = body.decode("utf-8")

        def refuse(name):
            raise ValueError(name)

        value = json.loads(text, parse_constant=refuse)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return BAD
    return value if depth(value) <= MAX_DEPTH else BAD


def depth(value) -> int:
    """How many arrays and objects deep `value` nests (a number or string is 0)."""
    level, layer = 0, [value]
    while containers := [v for v in layer if isinstance(v, dict | list)]:
        level += 1
        layer = [child for v in containers for child in (v.values() if isinstance(v, dict) else v)]
    return level


def first(headers: list, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k == name), None)


def authorized(headers: list) -> bool:
    scheme, _, credentials = (first(headers, b"authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and credentials.strip() == TOKEN


class Refused(int):
    """A status the body earns before anything looks at its JSON value."""


def read_body(request: dict, *, allow_empty: bool):
    """The body's JSON value (None for an allowed empty body), or the Refused status reading it earns."""
    headers, body = request["headers"], request["body"]
    declared = first(headers, b"content-length")
    if declared is None and not request["streamed"]:
        declared = str(len(body))  # what the client sends when it knows the length
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            return Refused(400)
        if len(declared.lstrip("0")) > len(str(MIB)) or int(declared) > MIB:
            return Refused(413)
    typed = is_json(first(headers, b"content-type"))
    if not typed and not allow_empty:
        return Refused(415)
    if len(body) > MIB:
        return Refused(413)
    if not body.strip():
        return None if allow_empty else Refused(400)
    if not typed:
        return Refused(415)
    value = strict_json(body)
    return Refused(400) if value is BAD else value


def expected_status(request: dict) -> int:
    route, name, headers = request["route"], request["name"], request["headers"]
    if route != "pipeline" and (not name or "/" in name):
        return 404  # no such route: answered before the token is looked at
    if not authorized(headers):
        return 401
    if route == "pipeline":
        values = [v for k, v in parse_qsl(request["query"], keep_blank_values=True) if k == "definition"]
        name = values[-1] if values else "alert-triage"
        if len(name) > 128:
            return 400
    if route != "validate" and name not in NAMES:
        return 404
    if route != "validate" and name not in WEBHOOK_NAMES:
        return 403
    value = read_body(request, allow_empty=route == "validate")
    if isinstance(value, Refused):
        return int(value)
    if route == "validate":
        if value is None:
            return 200 if name in NAMES else 404
        if not isinstance(value, dict) or name.startswith(".") or "\\" in name or len(name) > 128:
            return 400
        return 200
    if not isinstance(value, dict):
        return 400
    if route == "execute":
        try:
            ExecuteRequest.model_validate(value)
        except ValidationError:
            return 400
    return 503  # it passed every check: Prefect (the fake) fails the run


def check_answer(request: dict, response: httpx.Response) -> None:
    status = response.status_code
    text = response.text
    assert status != 500, text
    assert response.headers.get("content-type", "").startswith("application/json"), text[:200]
    assert not text.lstrip().startswith("<") and "Traceback" not in text and 'File "' not in text
    assert TOKEN not in text and TOKEN not in json.dumps(dict(response.headers))
    answer = response.json()
    if status >= 400:
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"], answer
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if status == 503:
        assert response.headers["retry-after"].isdigit(), answer
    if status == 200:
        assert isinstance(answer["valid"], bool) and isinstance(answer["problems"], list)
        assert answer["valid"] == (answer["problems"] == [])
    assert status == expected_status(request), (status, answer)


def send(receiver: InProcess, request: dict) -> httpx.Response:
    url = request["path"] + (f"?{request['query']}" if request["query"] else "")
    body = request["body"]
    content = body
    if request["streamed"]:

        async def chunks():
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536]

        content = chunks()
    return receiver.send("POST", url, request["headers"], content)


def fuzz(receiver: InProcess, size: settings) -> Counter:
    """Run the requests; how many answers of each status there were."""
    seen: Counter = Counter()

    @size
    @given(request=requests())
    def run(request):
        response = send(receiver, request)
        check_answer(request, response)
        seen[response.status_code] += 1

    run()
    return seen


def no_errors_logged(caplog) -> bool:
    return not [r for r in caplog.records if r.name == "opsflow.receiver" and r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_receiver_answers_every_request_as_documented(receiver, fake_prefect, caplog):
    """10,000 requests: each answer is the documented one, and accepted ones reach Prefect intact."""
    counts, _ = fake_prefect
    before = counts.get("create_flow_run", 0)
    caplog.set_level(logging.ERROR, logger="opsflow.receiver")
    seen = fuzz(receiver, MANY)
    assert set(seen) == {200, 400, 401, 403, 404, 413, 415, 503}, seen
    assert seen[503] > 1000, f"too few requests got past validation to test the Prefect side: {seen}"
    assert counts.get("create_flow_run", 0) - before == seen[503]
    assert counts.get("malformed", 0) == counts.get("unexpected", 0) == 0
    assert no_errors_logged(caplog)


def test_receiver_answers_every_request_as_documented_quick(receiver, fake_prefect, caplog):
    counts, _ = fake_prefect
    before = counts.get("create_flow_run", 0)
    caplog.set_level(logging.ERROR, logger="opsflow.receiver")
    seen = fuzz(receiver, FEW)
    assert seen[503] > 10 and counts.get("create_flow_run", 0) - before == seen[503], seen
    assert counts.get("malformed", 0) == counts.get("unexpected", 0) == 0
    assert no_errors_logged(caplog)


def test_oracle_knows_the_limits():
    """The contract above must itself be right about the edges it judges."""
    assert strict_json(_deep(MAX_DEPTH - 1)) is not BAD and strict_json(_deep(MAX_DEPTH)) is BAD
    for bad in (b'{"a": NaN}', b'{"a": 1e400}', b'{"a": "\\ud800"}', b"\xff", b'{"a": 1,}'):
        assert strict_json(bad) is BAD, bad
    assert strict_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert math.isfinite(strict_json(b'{"a": 1e308}')["a"])
