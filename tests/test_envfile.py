"""`pipeline run --env-file`: dotenv parsing, line-numbered errors, and values never echoed."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.cli.envfile import load_env_file, parse_env_file, parse_env_text
from nodes.errors import OpsflowError

SECRET = "sk-live-4f9c2b7e1d0a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("export A=1", {"A": "1"}),
        ("  export   A = spaced value  ", {"A": "spaced value"}),
        ("A=", {"A": ""}),
        ("A= # only a comment", {"A": ""}),
        ('A=""', {"A": ""}),
        ("A=value # comment", {"A": "value"}),
        ("A=a#b", {"A": "a#b"}),
        ("A=#not-a-comment", {"A": "#not-a-comment"}),
        ("A=x=y=z", {"A": "x=y=z"}),
        ('A="with # hash and spaces "  # comment', {"A": "with # hash and spaces "}),
        ("A='single $HOME \\n literal'", {"A": "single $HOME \\n literal"}),
        (
            'A="tab\\tnew\\nquote\\" back\\\\ dollar\\$ other\\d"',
            {"A": 'tab\tnew\nquote" back\\ dollar$ other\\d'},
        ),
        ("A=$HOME/${USER}", {"A": "$HOME/${USER}"}),
        ("A=it's", {"A": "it's"}),
        ('A="line one\nline two"\nB=2', {"A": "line one\nline two", "B": "2"}),
        (
            "A='-----BEGIN KEY-----\nabc\n-----END KEY-----'",
            {"A": "-----BEGIN KEY-----\nabc\n-----END KEY-----"},
        ),
        ("# comment\n\n   \n  # indented comment\nA=1\n", {"A": "1"}),
        ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
        ("A=first\nA=second", {"A": "second"}),
        ("A=x\u2028y\x85z", {"A": "x\u2028y\x85z"}),
        ("_under_score9=ok", {"_under_score9": "ok"}),
    ],
)
def test_parsing(text, expected):
    assert parse_env_text(text) == expected


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        (f"A=1\n\n{SECRET}", 3, "expected KEY=VALUE"),
        (f"A=1\nexport {SECRET}", 2, "expected KEY=VALUE"),
        (f"={SECRET}", 1, "expected KEY=VALUE"),
        (f"1BAD={SECRET}", 1, "the name must be letters, digits and _"),
        (f"BAD-NAME={SECRET}", 1, "the name must be letters, digits and _"),
        (f'A=1\nB="{SECRET}\nC=2\n', 2, "unterminated quoted value"),
        (f"A='{SECRET}", 1, "unterminated quoted value"),
        (f'A="{SECRET}" trailing', 1, "unexpected text after the closing quote"),
        (f'A="x\n{SECRET}" trailing', 2, "unexpected text after the closing quote"),
        (f"A=1\nB={SECRET}\x00", 2, "the value contains a NUL character"),
    ],
)
def test_errors_name_the_file_and_line_and_never_the_value(text, line, why):
    with pytest.raises(OpsflowError) as caught:
        parse_env_text(text, ".env")
    assert str(caught.value) == f"Invalid line {line} in .env: {why}"
    assert SECRET not in str(caught.value)


def test_file_errors(tmp_path):
    missing = tmp_path / "missing.env"
    with pytest.raises(OpsflowError, match=re.escape(f"Env file not found: {missing}")):
        parse_env_file(missing)
    with pytest.raises(OpsflowError, match="^Env file is a directory"):
        parse_env_file(tmp_path)  # a directory
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"A=1\n# note\nB=\xff" + SECRET.encode())
    with pytest.raises(OpsflowError) as caught:
        parse_env_file(binary)
    assert str(caught.value) == f"Invalid line 3 in {binary}: not UTF-8 text"


def test_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.env"
    path.write_bytes("\ufeffA=1\n".encode())
    assert parse_env_file(path) == {"A": "1"}


def test_load_sets_the_environment_and_the_file_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSFLOW_ENVFILE_A", "stale value from the shell")
    monkeypatch.setenv("OPSFLOW_ENVFILE_B", "to be replaced")  # undone after the test
    path = tmp_path / ".env"
    path.write_text(
        f"# settings for this run\nexport OPSFLOW_ENVFILE_A='{SECRET}'\nOPSFLOW_ENVFILE_B=two\n",
        encoding="utf-8",
    )
    assert load_env_file(path) == ["OPSFLOW_ENVFILE_A", "OPSFLOW_ENVFILE_B"]
    assert os.environ["OPSFLOW_ENVFILE_A"] == SECRET
    assert os.environ["OPSFLOW_ENVFILE_B"] == "two"


def test_a_bad_line_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSFLOW_ENVFILE_C", "before")
    path = tmp_path / ".env"
    path.write_text(f"OPSFLOW_ENVFILE_C=after\n{SECRET}\n", encoding="utf-8")
    with pytest.raises(OpsflowError, match=r"^Invalid line 2 in .*\.env: expected KEY=VALUE$"):
        load_env_file(path)
    assert os.environ["OPSFLOW_ENVFILE_C"] == "before"


VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def _double_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return f'"{escaped}"'


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_any_value_round_trips_through_double_quotes(value):
    assert parse_env_text(f"KEY={_double_quoted(value)}\nNEXT=1") == {"KEY": value, "NEXT": "1"}


@settings(max_examples=150, deadline=None)
@given(VALUES.filter(lambda v: "'" not in v and "\r" not in v))
def test_any_value_without_a_single_quote_round_trips_through_single_quotes(value):
    assert parse_env_text(f"KEY='{value}' # note\nNEXT=1") == {"KEY": value, "NEXT": "1"}


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_no_error_message_repeats_what_the_file_holds(junk):
    secret = f"{SECRET}{junk}"
    for text in (secret, f"A='{secret}", f'A="{secret}', f"{secret}=1", f"A={secret}\x00"):
        try:
            parse_env_text(text, ".env")
        except OpsflowError as exc:
            assert SECRET not in str(exc)
            assert re.fullmatch(r"Invalid line \d+ in \.env: [a-zA-Z =,_-]+", str(exc))
