"""The server-log check every real-server test relies on: one problem per log record."""

from __future__ import annotations

from support.prefect_server import ends_locked, final_exception, problem_records, server_log_problems

FRAME = '  File "/venv/site-packages/sqlalchemy/orm/m{0}.py", line {0}, in f{0}\n    call()\n'
FRAMES = "".join(FRAME.format(i) for i in range(40))

# the shape of the CI log: one ERROR whose exception was raised while handling another
CHAINED_ERROR = (
    "21:06:38.123 | ERROR   | prefect.server - Encountered error during state validation\n"
    "Traceback (most recent call last):\n"
    f"{FRAMES}"
    "sqlite3.OperationalError: database is locked\n"
    "\n"
    "The above exception was the direct cause of the following exception:\n"
    "\n"
    "  Traceback (most recent call last):\n"
    f"{FRAMES}"
    "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\n"
)
LATER = "21:06:39.001 | INFO    | prefect.server - done\n"
OTHER = (
    "21:06:40.500 | ERROR   | uvicorn.error - Exception in ASGI application\n"
    "Traceback (most recent call last):\n"
    "ValueError: boom\n"
)


def test_a_chained_traceback_is_one_problem_judged_whole() -> None:
    log = CHAINED_ERROR + LATER + OTHER
    records = problem_records(log)
    assert len(records) == 2
    assert records[0].endswith("(sqlite3.OperationalError) database is locked")
    assert "done" not in records[0]
    # the allowed message is on the record's first line, the inner traceback far below it
    assert server_log_problems(log, allowed=["Encountered error during state validation"]) == [OTHER.rstrip()]


def test_a_long_problem_is_shown_by_its_start_and_its_exception() -> None:
    (problem,) = server_log_problems(CHAINED_ERROR)
    assert problem.startswith("21:06:38.123 | ERROR   | prefect.server - Encountered error")
    assert "…" in problem and problem.endswith("database is locked")


def test_a_traceback_printed_past_logging_is_a_problem_of_its_own():
    raw = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'boom'\n"
    thread = "Exception in thread Thread-3:\nTraceback (most recent call last):\nValueError: bad\n"
    problems = server_log_problems(CHAINED_ERROR + raw + thread, allowed=["Encountered error"])
    assert problems == [raw.rstrip(), thread.rstrip()]


def test_a_warning_with_a_traceback_keeps_its_header_and_its_end():
    warning = (
        "21:06:41.000 | WARNING | prefect.server.services - Service stopped, ignored\n"
        "Traceback (most recent call last):\nOSError: closed\n"
    )
    (record,) = problem_records(LATER + warning + LATER)
    assert record.startswith("21:06:41.000 | WARNING") and record.endswith("OSError: closed")
    assert final_exception(record) == "OSError: closed"
    assert server_log_problems(warning, allowed=["Service stopped, ignored"]) == []


def test_the_exception_a_chain_ends_with():
    (record,) = problem_records(CHAINED_ERROR)
    locked = "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked"
    assert final_exception(record) == locked and ends_locked(record)
    caused = (
        "\n\nDuring handling of the above exception:\n\nTraceback (most recent call last):\nKeyError: 'x'"
    )
    assert not ends_locked(record + caused)  # the lock let pass only when the chain ends in it
