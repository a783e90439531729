"""The incident store while its PostgreSQL restarts under ingest load.

A private cluster (initdb + pg_ctl on a free loopback port, fsync off) is restarted
with `pg_ctl restart -m fast` while threads ingest through one shared engine, as a
worker's concurrent nodes do; then stopped under a flow run whose ingest node must
retry until it is back. The machine's shared server is never touched.

The store's consistency invariant (nodes/incidents/store.py, schema.py): one delivery is
one transaction, so an incident and the alerts it was opened with are written
together or not at all. There is never an incident without alerts, every stored
alert counts exactly the deliveries that were committed, and an incident is open
(with its `open_key` set) exactly when one of its alerts is firing.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.ports import free_port

from nodes.errors import IngestError
from nodes.incidents import store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

THREADS = 6
ALERTS_PER_DELIVERY = 3
LOAD_DEADLINE_SECONDS = 40.0


def _unavailable(reason: str):
    """Skip, unless CI promised PostgreSQL (OPSFLOW_TEST_POSTGRES_URL): then fail."""
    if os.environ.get("OPSFLOW_TEST_POSTGRES_URL"):
        pytest.fail(f"OPSFLOW_TEST_POSTGRES_URL is set but a private PostgreSQL cannot run: {reason}")
    pytest.skip(f"{reason} (set OPSFLOW_TEST_POSTGRES_URL to make this a failure)")


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PrivateCluster:
    """A throw-away PostgreSQL cluster owned by this test (as `postgres` when we are root)."""

    def __init__(self, bindir: Path, base: Path, as_postgres: bool):
        self.bindir, self.data, self.log = bindir, base / "data", base / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self._base = base

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._prefix, str(self.bindir / tool), *args]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr or done.stdout}\n{log}")

    def init_and_start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self._base}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "40",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.pg_ctl("start")

    def pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args, action)

    def started_at(self):
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return conn.execute("select pg_postmaster_start_time()").fetchone()[0]


@pytest.fixture(scope="module")
def cluster():
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or PATH")
    as_postgres = os.geteuid() == 0  # initdb refuses to run as root
    base = Path(tempfile.mkdtemp(prefix="opsflow-pg-fault-"))
    if as_postgres:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            _unavailable("running as root and there is no `postgres` user to run initdb as")
        if not shutil.which("runuser"):
            shutil.rmtree(base)
            _unavailable("running as root and `runuser` is missing")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PrivateCluster(bindir, base, as_postgres)
    try:
        server.init_and_start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"could not start a private PostgreSQL: {exc}")
    try:
        yield server
    finally:
        store.dispose_engines()
        try:
            server.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _alert(fingerprint: str) -> dict:
    return {
        "fingerprint": fingerprint,
        "status": "firing",
        "severity": "critical",
        "title": f"alert {fingerprint}",
        "description": "restart test",
        "labels": {"fp": fingerprint},
        "annotations": {},
        "source": "generic",
        "starts_at": None,
        "ends_at": None,
        "generator_url": None,
    }


class Load:
    """Threads that ingest until told to stop, each call recorded with its outcome and times.

    Calls alternate between opening a new group (an insert of the incident and its
    alerts) and repeating the thread's own steady group (an update of known alerts).
    """

    def __init__(self):
        self.calls: list[dict] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(t,), daemon=True) for t in range(THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "an ingest call hung"

    def succeeded(self, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c["outcome"] == "ok" and c["started"] >= after)

    def _work(self, thread: int) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_SECONDS
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = f"steady-{thread}" if n % 2 else f"new-{thread}-{n}"
            alerts = [_alert(f"{key}-{i}") for i in range(ALERTS_PER_DELIVERY)]
            call = {"key": key, "started": time.monotonic()}
            try:
                store.ingest(alerts, key=key, title=key, source="generic")
                call["outcome"] = "ok"
            except IngestError as exc:
                call.update(outcome="error", error=exc)
                time.sleep(0.02)  # a worker would wait before retrying; don't spin on a refused port
            except Exception as exc:  # anything else escaping the store is what the test looks for
                call.update(outcome="escaped", error=exc)
            call["ended"] = time.monotonic()
            with self._lock:
                self.calls.append(call)
            n += 1


def _wait_for(condition, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_restart_under_ingest_load_loses_nothing_and_writes_nothing_half(cluster, monkeypatch):
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", cluster.url)
    store.dispose_engines()
    store.ingest([_alert("warm-up")], key="warm-up", title="warm-up", source="generic")  # schema exists
    before = cluster.started_at()

    load = Load()
    load.start()
    try:
        _wait_for(lambda: load.succeeded() >= 4 * THREADS, "ingest load before the restart")
        restart_began = time.monotonic()
        cluster.pg_ctl("restart", "-m", "fast")
        restart_ended = time.monotonic()
        _wait_for(lambda: load.succeeded(after=restart_ended) >= 4 * THREADS, "ingest load after the restart")
    finally:
        load.join()
    assert cluster.started_at() > before, "the server did not restart"

    calls = load.calls
    during = [c for c in calls if c["started"] < restart_ended and c["ended"] > restart_began]
    assert during, "no ingest call overlapped the restart"
    # 1. every call either succeeded or raised a clear, retryable IngestError naming the store
    escaped = [f"{type(c['error']).__name__}: {c['error']}" for c in calls if c["outcome"] == "escaped"]
    assert not escaped, escaped
    failures = [c for c in calls if c["outcome"] == "error"]
    for call in failures:
        error = call["error"]
        assert error.retryable, error.message
        assert error.message.startswith(
            f"incident store (postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/"
        )
        assert "ingesting alerts failed: " in error.message
        assert "\n" not in error.message and "Traceback" not in error.message
        assert call["ended"] > restart_began, f"a call failed before the restart: {error.message}"
    # 2. once the server is back, the pool recovers: every call started after it succeeded
    after = [c for c in calls if c["started"] >= restart_ended]
    assert after and all(c["outcome"] == "ok" for c in after), [str(c.get("error")) for c in after]

    # 3. no partial rows: what succeeded is whole, what failed is whole or absent
    rows = _stored_rows(cluster.url)
    orphans = [key for key, alerts in rows.items() if not alerts]
    assert not orphans, f"incidents without alerts: {orphans}"
    ok = Counter(c["key"] for c in calls if c["outcome"] == "ok")
    failed = Counter(c["key"] for c in failures)
    for key in set(ok) | set(failed):
        alerts = rows.get(key)
        if ok[key] == 0 and alerts is None:
            continue  # only failed deliveries: nothing of them was written
        assert alerts is not None, f"{key}: {ok[key]} successful deliveries but no incident"
        assert sorted(alerts) == [f"{key}-{i}" for i in range(ALERTS_PER_DELIVERY)], key
        # a failure at COMMIT may still have committed (the server went before its answer):
        # each alert counts the committed deliveries, every success and at most those failures
        receives = set(alerts.values())
        assert len(receives) == 1, f"{key}: alerts of one delivery disagree: {alerts}"
        (count,) = receives
        assert ok[key] <= count <= ok[key] + failed[key], (key, count, ok[key], failed[key])
    assert set(rows) <= set(ok) | set(failed) | {"warm-up"}
    _assert_status_matches_alerts(cluster.url)


def _stored_rows(url: str) -> dict[str, dict[str, int]]:
    """{incident key: {alert fingerprint: receive_count}} straight from the database."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        keys = dict(conn.execute("select id, key from opsflow_incidents").fetchall())
        found: dict[str, dict[str, int]] = {key: {} for key in keys.values()}
        assert len(found) == len(keys), "two incidents share a group key"
        for incident_id, fingerprint, receives in conn.execute(
            "select incident_id, fingerprint, receive_count from opsflow_alerts"
        ):
            found[keys[incident_id]][fingerprint] = receives
    return found


def _assert_status_matches_alerts(url: str) -> None:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        wrong = conn.execute(
            """
            select i.key, i.status, i.open_key is not null,
                   exists (select 1 from opsflow_alerts a where a.incident_id = i.id and a.status = 'firing')
            from opsflow_incidents i
            """
        ).fetchall()
    bad = [row for row in wrong if (row[1] == "open") != row[3] or (row[1] == "open") != row[2]]
    assert not bad, f"incident status disagrees with its alerts: {bad}"


def _back_after_first_knock(cluster: PrivateCluster) -> threading.Thread:
    """While the server is stopped, answer its port once (accept, hang up), then start it.

    The run's first attempt is then sure to meet the outage, however slowly it starts.
    """
    stand_in = socket.create_server(("127.0.0.1", cluster.port))
    stand_in.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = stand_in.accept()
            conn.close()
        finally:
            stand_in.close()
            cluster.pg_ctl("start")

    thread = threading.Thread(target=serve, name="postgres-comes-back", daemon=True)
    thread.start()
    return thread


def test_ingest_node_is_retried_through_an_outage_and_stores_the_alert_once(
    cluster, prefect_api, monkeypatch
):
    """The database is down when the run starts and back after its first attempt: the
    node's retries (from the definition) carry the alert through, and the failed
    attempt wrote nothing."""
    from flows.pipeline import run_pipeline
    from nodes.ingest.samples import sample_payload

    monkeypatch.setenv("OPSFLOW_DATABASE_URL", cluster.url)
    definition = {
        "name": "ingest-outage",
        "version": "1.0",
        "nodes": [
            {
                "id": "ingest",
                "type": "ingest",
                "retries": 6,
                "retry_delay_seconds": 0.5,
                "timeout_seconds": 20,
            }
        ],
    }
    cluster.pg_ctl("stop", "-m", "fast")
    comes_back = _back_after_first_knock(cluster)
    try:
        state = asyncio.run(run_pipeline(definition=definition, payload=sample_payload(), return_state=True))
    finally:
        comes_back.join(timeout=60)
    assert cluster.started_at() is not None  # the server is back for whatever runs next
    result = state.result(raise_on_failure=False)
    assert state.is_completed() and result["status"] == "completed", result["error"]
    node = result["node_results"]["ingest"]
    assert node["attempts"] >= 2  # the first attempt met the outage
    assert node["output"]["created"] is True and node["output"]["counts"]["new"] == 2
    stored = store.get_incident(result["incident_id"])
    assert stored["alert_count"] == 2
    assert [a["receive_count"] for a in stored["alerts"]] == [1, 1]  # no failed attempt left a row
