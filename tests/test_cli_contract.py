"""The `pipeline` contract every command shares: exit codes, one-line errors, the seed layouts."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from flows import cli


@pytest.fixture
def cli_run(monkeypatch, capsys):
    def go(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["pipeline", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        out, err = capsys.readouterr()
        return info.value.code, out, err

    return go


@pytest.mark.parametrize(
    "args, message",
    [
        (["approve", "nope"], "Flow run not found: nope"),
        (["approve", str(uuid.uuid4())], "Flow run not found: "),
        (["show", str(uuid.uuid4())], "Flow run not found: "),
        (["logs", str(uuid.uuid4())], "Flow run not found: "),
        (["incidents", "abc"], "Incident id must be a number: abc"),
        (["incidents", "987654321"], "Incident not found: 987654321"),
        (["pull", "no-such-block"], "Pipeline definition not found: block no-such-block"),
        (
            ["run", "-d", "health-check", "--only", "metrics", "--skip", "metrics"],
            "in both --only and --skip",
        ),
        (
            ["run", "-d", "health-check", "--only", "metrics", "--skip", "metrics", "--dry-run"],
            "Node id(s) in both --only and --skip: metrics",
        ),
    ],
)
def test_usage_and_not_found_exit_2_for_every_command(cli_run, prefect_api, args, message):
    code, out, err = cli_run(*args)
    assert (code, message in err) == (2, True), (code, err)
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_verbose_adds_the_traceback(cli_run, prefect_api):
    code, _, err = cli_run("approve", "nope", "-v")
    assert code == 2 and "Traceback" in err and "Flow run not found: nope" in err.splitlines()[-1]


def test_a_failed_run_exits_1_and_says_so_once(cli_run, prefect_api, tmp_path):
    path = tmp_path / "fails.json"
    path.write_text(
        json.dumps(
            {"version": "1.0", "nodes": [{"id": "t", "type": "transform", "config": {"source_node": "x"}}]}
        )
    )
    code, out, err = cli_run("run", "--config", str(path))
    assert code == 1
    assert err.count("Pipeline failed:") == 1, err
