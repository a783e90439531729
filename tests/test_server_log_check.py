"""The server-log check every real-server test relies on: one problem per log record."""

from __future__ import annotations

from support.prefect_server import problem_records, server_log_problems

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
