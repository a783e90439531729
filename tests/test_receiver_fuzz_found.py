"""Requests the receiver fuzzing found answered 500 once: each is now a clean 4xx.

The same in-process receiver and fake Prefect as tests/test_receiver_fuzz.py.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from test_receiver_fuzz import TOKEN, _deep, fake_prefect, receiver  # noqa: F401

from deployments.receiver.http import MAX_DEPTH

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ([(b"content-length", b"\xb2")], b"{}", 400, "Content-Length is not a number"),
        ([(b"content-length", b"9" * 5000)], b"{}", 413, "over the limit"),
        ([], b'{"a": "\\ud800"}', 400, "half a surrogate pair"),
        ([], b'{"a": 1e400}', 400, "the number 1e400 is out of range"),
        ([], _deep(MAX_DEPTH), 400, f"nested deeper than {MAX_DEPTH} levels"),
        ([], _deep(990), 400, "invalid JSON"),
    ],
)
def test_bodies_the_fuzzing_found_are_clean_400s_and_413s(receiver, headers, body, status, error):  # noqa: F811
    """Each of these was a 500 (a traceback in the log) before: ValueError from int("²") or from
    a 5,000-digit length, and UnicodeEncodeError, ValueError or RecursionError inside Prefect's
    client for a lone surrogate, an infinite number or a payload a few hundred levels deep."""
    auth = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]
    response = receiver.send("POST", "/pipeline", auth + headers, body)
    assert response.status_code == status and error in response.json()["error"], response.text


def test_a_definition_name_too_long_for_a_file_name_is_a_404(receiver):  # noqa: F811
    """Names past 255 bytes (with `.json`) cannot be files: not found, never a server error."""
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]
    for url in (
        f"/pipeline?definition={quote('é' * 128)}",
        f"/definitions/{'x' * 300}/execute",
        f"/definitions/{'x' * 300}/validate",
    ):
        body = b"" if url.endswith("validate") else b"{}"
        assert receiver.send("POST", url, headers, body).status_code == 404, url
