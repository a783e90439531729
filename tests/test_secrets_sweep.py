"""Secrets sweep (issue #8): distinctive values for every provider and driver credential, every
definition run through the real `pipeline` CLI (dry-run and for real, against loopback fakes),
then every place a run leaves text is searched for them. Zero occurrences, and each secret
provably reached the fake that needed it, so the sweep cannot pass by sending nothing.

Two extra definitions make every credential do its job: `sweep-all` uses every AI provider
and notify driver (plus a policy hook and a `${secret:...}` block) and succeeds; `sweep-fail`
sends the same credentials to fakes that echo them back in their errors, with an unreachable
PostgreSQL URL carrying a password as the incident store.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from secrets_sweep_fakes import REFUSED_SMTP_USER, FakeApis, SmtpFake, auth
from secrets_sweep_support import (
    Run,
    Secret,
    basic_auth,
    file_bytes,
    leaks,
    pipeline,
    prefect_records,
    smtp_plain,
    sqlite_dump,
    sweep_definition,
)
from support.ports import free_port

from flows.definition import list_definitions

pytestmark = pytest.mark.timeout(300)

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"
MARK = "7f3a9c2e"
SECRET_BLOCK = f"sweep-anthropic-bearer-{uuid.uuid4().hex[:8]}"
SMTP_USER = "sweep-smtp-user"
WEBHOOK_USER = "sweep-basic-user"
# alert payloads with distinct fingerprints, so no run is a duplicate that notifies nobody
PAYLOADS = [
    "alertmanager-firing-zulip.json",
    "grafana-unified-firing.json",
    "datadog-webhook-default-template-filled.json",
    "zabbix-zulip-problem.json",
    "aws-cloudwatch-sns-alarm.json",
    "pagerduty-v3-incident-triggered.json",
    "grafana-legacy-alerting.json",
]

TOKENS = {
    "OPENAI_API_KEY": f"sk-SWEEP-openai-{MARK}",
    "ANTHROPIC_API_KEY": f"sk-ant-SWEEP-anthropic-{MARK}",
    "compatible api_key (typed in)": f"SWEEP-compatible-typed-{MARK}",
    f"secret:{SECRET_BLOCK}": f"SWEEP-secretblock-{MARK}",
    "SLACK_WEBHOOK_URL": f"SWEEPslackhook{MARK}",
    "SLACK_BOT_TOKEN": f"xoxb-SWEEP-slackbot-{MARK}",
    "TEAMS_WEBHOOK_URL": f"SWEEPteamssig{MARK}",
    "DISCORD_WEBHOOK_URL": f"SWEEPdiscordtoken{MARK}",
    "PAGERDUTY_ROUTING_KEY": f"SWEEPpagerdutykey{MARK}",
    "SWEEP_WEBHOOK_URL (path)": f"SWEEPwebhookpath{MARK}",
    "SWEEP_WEBHOOK_URL (password)": f"SWEEP-basic-pw-{MARK}",
    "SWEEP_WEBHOOK_TOKEN": f"SWEEP-webhook-header-{MARK}",
    "SWEEP_POLICY_WEBHOOK_URL": f"SWEEPpolicyhook{MARK}",
    "SMTP_PASSWORD": f"SWEEP-smtp-p@ss/w+rd-{MARK}",
    "OPSFLOW_RECEIVER_TOKEN": f"SWEEP-receiver-{MARK}",
    "PREFECT_API_AUTH_STRING": f"SWEEP-prefect-auth-{MARK}",
    "OPSFLOW_DATABASE_URL (password)": f"SWEEP-dbpass-{MARK}",
    "webhook url (typed in)": f"SWEEPtypedhookpath{MARK}",
    "webhook header (typed in)": f"SWEEP-typed-header-{MARK}",
}
TYPED_IN = {name for name in TOKENS if name.endswith("(typed in)")}


def settings(fake: FakeApis, smtp: SmtpFake, prefix: str) -> tuple[dict[str, str], list[Secret]]:
    """The environment of one run (fakes under `prefix`) and the secrets it carries."""
    t = TOKENS
    url = fake.url
    webhook = urllib.parse.urlsplit(url(f"{prefix}/webhook/{t['SWEEP_WEBHOOK_URL (path)']}"))
    webhook_pw = t["SWEEP_WEBHOOK_URL (password)"]
    webhook_url = webhook._replace(netloc=f"{WEBHOOK_USER}:{webhook_pw}@{webhook.netloc}").geturl()
    env = {
        "OPENAI_API_KEY": t["OPENAI_API_KEY"],
        "OPENAI_BASE_URL": url(f"{prefix}/v1"),
        "ANTHROPIC_API_KEY": t["ANTHROPIC_API_KEY"],
        "SLACK_WEBHOOK_URL": url(f"{prefix}/slack/hooks/T0SWEEP/B0SWEEP/{t['SLACK_WEBHOOK_URL']}"),
        "SLACK_BOT_TOKEN": t["SLACK_BOT_TOKEN"],
        "TEAMS_WEBHOOK_URL": url(f"{prefix}/teams/workflows/{t['TEAMS_WEBHOOK_URL']}"),
        "DISCORD_WEBHOOK_URL": url(f"{prefix}/discord/api/webhooks/1234/{t['DISCORD_WEBHOOK_URL']}"),
        "PAGERDUTY_ROUTING_KEY": t["PAGERDUTY_ROUTING_KEY"],
        "SWEEP_WEBHOOK_URL": webhook_url,
        "SWEEP_WEBHOOK_TOKEN": t["SWEEP_WEBHOOK_TOKEN"],
        "SWEEP_POLICY_WEBHOOK_URL": url(f"{prefix}/policy/{t['SWEEP_POLICY_WEBHOOK_URL']}"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": REFUSED_SMTP_USER if prefix else SMTP_USER,
        "SMTP_PASSWORD": t["SMTP_PASSWORD"],
        "SMTP_FROM": "opsflow@example.test",
        "OPSFLOW_RECEIVER_TOKEN": t["OPSFLOW_RECEIVER_TOKEN"],
        "PREFECT_API_AUTH_STRING": f"sweep:{t['PREFECT_API_AUTH_STRING']}",
    }
    smtp_user = env["SMTP_USERNAME"]
    extra = {
        "SWEEP_WEBHOOK_URL (password)": (basic_auth(WEBHOOK_USER, webhook_pw),),
        "SMTP_PASSWORD": (smtp_plain(smtp_user, t["SMTP_PASSWORD"]),),
    }
    values = {**env, f"secret:{SECRET_BLOCK}": t[f"secret:{SECRET_BLOCK}"]}
    values.update({name: t[name] for name in TYPED_IN})
    values["webhook url (typed in)"] = typed_hook_url(fake, prefix)
    values["SWEEP_WEBHOOK_URL (path)"] = values["SWEEP_WEBHOOK_URL (password)"] = webhook_url
    if prefix:  # the failing run's store: PostgreSQL on a closed port, its password in the URL
        db_pw = t["OPSFLOW_DATABASE_URL (password)"]
        env["OPSFLOW_DATABASE_URL"] = f"postgresql+psycopg://opsflow:{db_pw}@127.0.0.1:{free_port()}/store"
        values["OPSFLOW_DATABASE_URL (password)"] = env["OPSFLOW_DATABASE_URL"]
    secrets = [
        Secret(name, values[name], token, extra.get(name, ())) for name, token in t.items() if name in values
    ]
    return env, secrets


def typed_hook_url(fake: FakeApis, prefix: str) -> str:
    return fake.url(f"{prefix}/typed-hook/{TOKENS['webhook url (typed in)']}")


@dataclass(repr=False)
class Sweep:
    fake: FakeApis
    smtp: SmtpFake
    secrets: list[Secret]
    runs: list[Run]
    store: str
    store_file: bytes
    prefect_db: bytes
    result_storage: bytes


@pytest.fixture(scope="module")
def sweep(prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    from prefect.blocks.system import Secret as SecretBlock

    tmp = tmp_path_factory.mktemp("sweep")
    fake, smtp = FakeApis.start(), SmtpFake().start()
    try:
        SecretBlock(value=TOKENS[f"secret:{SECRET_BLOCK}"]).save(SECRET_BLOCK, overwrite=True)
        store = tmp / "incidents.db"
        base = {**os.environ, "PREFECT_API_URL": prefect_api, "OPSFLOW_DATABASE_URL": f"sqlite:///{store}"}
        ok_env, ok_secrets = settings(fake, smtp, "")
        fail_env, fail_secrets = settings(fake, smtp, "/fail")
        targets = []  # (label, definition args, payload file, env)
        payloads = iter(PAYLOADS)
        for path in list_definitions():
            targets.append((path.stem, ["--definition", path.stem], next(payloads), {**base, **ok_env}))
        for name, prefix, env in (("sweep-all", "", ok_env), ("sweep-fail", "/fail", fail_env)):
            path = tmp / f"{name}.json"
            typed = {
                "api_key": TOKENS["compatible api_key (typed in)"],
                "hook_url": typed_hook_url(fake, prefix),
                "header": TOKENS["webhook header (typed in)"],
            }
            raw = sweep_definition(name, fake.url, prefix, SECRET_BLOCK, typed)
            path.write_text(json.dumps(raw, indent=2))
            targets.append((name, ["--config", str(path)], next(payloads), {**base, **env}))
        runs = []
        for label, ref, payload, env in targets:
            args = ["run", *ref, "--file", str(INBOUND / payload)]
            runs.append(pipeline(f"{label} dry-run", [*args, "--dry-run"], env))
            runs.append(pipeline(label, [*args, "--json", "--verbose"], env))
        # what users read back later: the failed run from Prefect, the incidents from the store
        failed_id = runs[-1].result["run_id"]
        for command in (["show", failed_id], ["logs", failed_id], ["incidents", "3"], ["doctor"]):
            runs.append(pipeline(command[0], command, {**base, **ok_env}))
        for run in runs:
            if run.result and run.result.get("run_id"):
                run.records = prefect_records(run.result["run_id"])
        home = Path(os.environ["PREFECT_HOME"])
        yield Sweep(
            fake=fake,
            smtp=smtp,
            secrets=ok_secrets + fail_secrets,
            runs=runs,
            store=sqlite_dump(store),
            store_file=file_bytes(store, Path(f"{store}-wal")),
            prefect_db=file_bytes(home / "prefect.db", home / "prefect.db-wal"),
            # node results, and the errors of failed attempts, as Prefect stored them
            result_storage=file_bytes(*sorted(p for p in (home / "storage").rglob("*") if p.is_file())),
        )
    finally:
        smtp.stop()
        fake.stop()


def real_runs(sweep: Sweep) -> dict[str, Run]:
    return {run.label: run for run in sweep.runs if run.result is not None}


def test_every_definition_ran_dry_and_for_real(sweep):
    shipped = [p.stem for p in list_definitions()]
    assert {"health-check", "alert-triage", "ai-triage"} <= set(shipped)
    runs = {run.label: run for run in sweep.runs}
    for name in [*shipped, "sweep-all", "sweep-fail"]:
        dry = runs[f"{name} dry-run"]
        assert dry.code == 0 and dry.stdout.startswith("=== DRY RUN ==="), dry.stderr
    assert runs["doctor"].code == 0 and "ai-triage: valid, settings present" in runs["doctor"].stdout
    assert runs["show"].code == 0 and "PIPELINE RESULT" in runs["show"].stdout, runs["show"].stderr
    assert runs["logs"].code == 0 and "login refused" in runs["logs"].stdout, runs["logs"].stderr
    assert runs["incidents"].code == 0 and "Zabbix agent" in runs["incidents"].stdout, runs[
        "incidents"
    ].stderr
    real = real_runs(sweep)
    for name in shipped:
        assert real[name].code == 0 and real[name].result["status"] == "completed", real[name].stderr[-2000:]
    assert real["alert-triage"].result["node_results"]["slack"]["skipped"] is False
    assert real["ai-triage"].result["node_results"]["analyze"]["output"]["provider"] == "openai"
    everything = real["sweep-all"].result
    assert everything["status"] == "completed", real["sweep-all"].stderr[-3000:]
    assert everything["node_results"]["notify"]["output"]["channels_succeeded"] == 9
    failing = real["sweep-fail"]
    assert failing.code == 1 and failing.result["status"] == "failed"
    assert "Pipeline failed: node 'notify': 8 of 9 channel(s) failed" in failing.stderr
    errors = {n: r["errors"][0]["message"] for n, r in failing.result["node_results"].items() if r["errors"]}
    assert set(errors) == {"ingest", "openai", "anthropic", "anthropic-bearer", "compatible", "notify"}
    assert "incident store (postgresql+psycopg://opsflow:***@127.0.0.1:" in errors["ingest"]
    assert f"login refused for '{REFUSED_SMTP_USER}'" in errors["notify"]
    for run in real.values():  # the Prefect records swept below are really there
        counts = json.loads(run.records["_counts"])
        assert counts["logs"] > 0 and counts["artifacts"] == 2 and counts["task_runs"] > 0, run.label
        completed = [n for n in run.result["node_results"].values() if not n["skipped"] and not n["errors"]]
        assert counts["results"] == len(completed), run.label  # one result artifact per completed node
    assert sweep.store.count("opsflow_incidents: (") == 3  # alert-triage, ai-triage, sweep-all


def test_every_secret_reached_the_fake_that_needed_it(sweep):
    t, fake = TOKENS, sweep.fake
    for prefix in ("", "/fail"):
        llm = {auth(r) for r in fake.llm_requests() if r.path.startswith(f"{prefix}/v1")}
        assert llm == {
            f"Bearer {t['OPENAI_API_KEY']}",
            t["ANTHROPIC_API_KEY"],
            f"Bearer {t[f'secret:{SECRET_BLOCK}']}",
            f"Bearer {t['compatible api_key (typed in)']}",
        }, prefix
        assert fake.to(f"{prefix}/slack/hooks/T0SWEEP/B0SWEEP/{t['SLACK_WEBHOOK_URL']}")
        assert {auth(r) for r in fake.to(f"{prefix}/slack/api/")} == {f"Bearer {t['SLACK_BOT_TOKEN']}"}
        assert fake.to(f"{prefix}/teams/workflows/{t['TEAMS_WEBHOOK_URL']}")
        assert fake.to(f"{prefix}/discord/api/webhooks/1234/{t['DISCORD_WEBHOOK_URL']}")
        (page,) = fake.to(f"{prefix}/pagerduty/")
        assert json.loads(page.body)["routing_key"] == t["PAGERDUTY_ROUTING_KEY"]
        (hook,) = fake.to(f"{prefix}/webhook/{t['SWEEP_WEBHOOK_URL (path)']}")
        assert auth(hook) == "Basic " + basic_auth(WEBHOOK_USER, t["SWEEP_WEBHOOK_URL (password)"])
        assert hook.headers["X-Sweep-Token"] == t["SWEEP_WEBHOOK_TOKEN"]
        (typed,) = fake.to(f"{prefix}/typed-hook/{t['webhook url (typed in)']}")
        assert typed.headers["X-Sweep-Token"] == t["webhook header (typed in)"]
        assert fake.to(f"{prefix}/policy/{t['SWEEP_POLICY_WEBHOOK_URL']}")
    # the shipped ai-triage called the model too, and both alert definitions posted to Slack
    assert len([r for r in fake.to("/v1/chat/") if auth(r) == f"Bearer {t['OPENAI_API_KEY']}"]) == 2
    assert len(fake.to("/slack/hooks/")) == 3
    logins = {(SMTP_USER, t["SMTP_PASSWORD"]), (REFUSED_SMTP_USER, t["SMTP_PASSWORD"])}
    assert set(sweep.smtp.logins) == logins and len(sweep.smtp.messages) == 1


def surfaces_of(sweep: Sweep, *, dry_runs: bool) -> dict[str, str]:
    """Output, and what Prefect kept, of the dry runs or of the others (doctor and real runs)."""
    found = {}
    for run in sweep.runs:
        if run.label.endswith("dry-run") == dry_runs:
            found[f"{run.label} stdout"] = run.stdout
            found[f"{run.label} stderr"] = run.stderr
            found.update({f"{run.label} {where}": text for where, text in run.records.items()})
    return found


def test_no_secret_in_output_logs_artifacts_results_or_store(sweep):
    surfaces = surfaces_of(sweep, dry_runs=False)
    surfaces["incident store"] = sweep.store
    surfaces["incident store file"] = sweep.store_file
    surfaces["smtp messages"] = "\n".join(sweep.smtp.messages)
    found = leaks(surfaces, sweep.secrets)
    found += leaks(surfaces_of(sweep, dry_runs=True), [s for s in sweep.secrets if s.name not in TYPED_IN])
    assert not found, "\n".join(found)


def test_no_typed_in_secret_in_dry_runs(sweep):
    typed = [s for s in sweep.secrets if s.name in TYPED_IN]
    found = leaks(surfaces_of(sweep, dry_runs=True), typed)
    assert not found, "\n".join(found)


def test_no_secret_in_the_prefect_database(sweep):
    """The server's own database and the node results in result storage: everything Prefect kept."""
    assert b"run-pipeline" in sweep.prefect_db
    assert b'\\"node_id\\": \\"notify\\"' in sweep.result_storage  # the stored results are read below
    found = leaks({"prefect.db": sweep.prefect_db, "result storage": sweep.result_storage}, sweep.secrets)
    assert not found, "\n".join(found)


def test_requests_carry_only_their_own_credential(sweep):
    """No prompt, message or header carries a secret other than where the API wants it."""
    assert len(sweep.fake.llm_requests()) == 9  # ai-triage 1, sweep-all 4, sweep-fail 4
    surfaces = {}
    for i, request in enumerate(sweep.fake.received):
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("authorization", "x-api-key", "x-sweep-token")
        }
        body = request.body
        if request.path.removeprefix("/fail").startswith("/pagerduty/"):
            body = json.dumps({**json.loads(body), "routing_key": "<the credential>"})
        surfaces[f"request {i} {request.path[:40]}"] = json.dumps({"headers": headers, "body": body})
    found = leaks(surfaces, sweep.secrets)
    assert not found, "\n".join(found)


def test_secrets_cover_the_forms_a_server_echoes():
    """Unit check of what the sweep relies on: a webhook URL's path, query, password and Basic header."""
    from nodes.base import Secrets, typed_in_secrets
    from nodes.runtime import validate_config

    url = "https://bot:pa55-word@hooks.example.test/services/T0/B0/XYZ123?sig=abcdef0123"
    secrets = Secrets({url})
    echoed = (
        "Cannot POST /services/T0/B0/XYZ123?sig=abcdef0123 (path /services/T0/B0/XYZ123), "
        f"auth=Basic {basic_auth('bot', 'pa55-word')} pw=pa55-word json={json.dumps(url)}"
    )
    assert secrets.redact(echoed) == 'Cannot POST *** (path ***), auth=Basic *** pw=*** json="***"'
    assert len(secrets) == 1 and url in secrets
    assert Secrets({"http://127.0.0.1:8/v1"}).redact("POST /v1/chat") == "POST /v1/chat"
    config = validate_config(
        "notify",
        {
            "channels": [
                {"driver": "pagerduty", "routing_key": "typed-key-1"},
                {"driver": "webhook", "url": url},
            ]
        },
    )
    assert typed_in_secrets(config) == {"typed-key-1", url}
    config = validate_config("intelligence", {"provider": "anthropic", "api_key": "typed-key-2"})
    assert typed_in_secrets(config) == {"typed-key-2"}
