"""Hypothesis strategies for alert payloads: each format's real fixtures, mutated, and arbitrary JSON.

A format's payloads are its real fixtures with fields replaced by junk, removed,
repeated or wrapped, and the fields its parser reads set to odd values. Shared by the
ingest fuzz tests (parsing, storing) and the receiver's fuzz test.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

from hypothesis import strategies as st

from nodes.ingest import FORMATS

__all__ = ["JSONISH", "JUNK", "TEXT", "encode", "mutated", "payloads"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


SEEDS = {
    "alertmanager": [
        "alertmanager/firing-group.json",
        "alertmanager/resolved-group.json",
        "inbound/alertmanager-firing-group.json",
        "inbound/alertmanager-firing-zulip.json",
        "inbound/alertmanager-firing-compact-2018.json",
        "inbound/alertmanager-resolved-compact-2018.json",
    ],
    "grafana": [
        "inbound/grafana-unified-firing.json",
        "inbound/grafana-unified-resolved.json",
        "inbound/grafana-legacy-alerting.json",
        "inbound/grafana-legacy-ok.json",
    ],
    "pagerduty": ["inbound/pagerduty-v3-incident-triggered.json"],
    "cloudwatch": ["inbound/aws-cloudwatch-sns-alarm.json", "inbound/aws-sns-subscription-confirmation.json"],
    "zabbix": ["inbound/zabbix-zulip-problem.json", "inbound/zabbix-zulip-ok.json"],
    "datadog": ["inbound/datadog-webhook-default-template-filled.json"],
    "generic": [],
}
# formats whose fixtures do not show every field the parser reads: one payload with all of them
COMPOSED = {
    "generic": {
        "title": "Disk full",
        "severity": "high",
        "status": "firing",
        "description": "/var is 97% full",
        "fingerprint": "disk-full-db-01",
        "labels": {"host": "db-01", "mount": "/var"},
        "annotations": {"runbook": "https://runbooks.example/disk"},
        "source": "cron",
        "starts_at": "2024-05-01T10:00:00Z",
        "ends_at": None,
        "generator_url": "https://monitor.example/disk",
    },
    "datadog": {
        "title": "[Recovered] Disk usage high on db-01",
        "event_type": "query_alert_monitor",
        "body": "Disk usage back under 80%",
        "alert_transition": "Recovered",
        "alert_id": "18692904",
        "alert_type": "success",
        "alert_scope": "host:db-01",
        "aggregate": "a1b2c3",
        "priority": "normal",
        "tags": "env:prod,team:db,host:db-01",
        "last_updated": 1591216985000,
        "id": "5485379890863845239",
        "link": "https://app.datadoghq.com/event/event?id=5485379890863845239",
    },
}
# the fields each parser reads (`*` is any list entry); mutations aim at them first
FIELDS = {
    "alertmanager": [
        "alerts", "groupLabels", "groupLabels.alertname", "commonLabels", "commonLabels.alertname",
        "commonAnnotations", "commonAnnotations.summary", "groupKey", "receiver", "status",
        "alerts.*", "alerts.*.labels", "alerts.*.labels.alertname", "alerts.*.labels.severity",
        "alerts.*.labels.priority", "alerts.*.annotations", "alerts.*.annotations.summary",
        "alerts.*.annotations.description", "alerts.*.annotations.severity", "alerts.*.status",
        "alerts.*.fingerprint", "alerts.*.startsAt", "alerts.*.endsAt", "alerts.*.generatorURL",
    ],
    "grafana": [
        "alerts", "orgId", "state", "title", "ruleName", "ruleId", "message", "tags", "tags.severity",
        "ruleUrl", "imageUrl", "dashboardId", "panelId", "evalMatches", "groupKey", "receiver",
        "alerts.*.status", "alerts.*.labels", "alerts.*.annotations", "alerts.*.fingerprint",
        "alerts.*.startsAt", "alerts.*.endsAt", "alerts.*.silenceURL", "alerts.*.values",
    ],
    "pagerduty": [
        "event", "event.event_type", "event.resource_type", "event.occurred_at", "event.data",
        "event.data.id", "event.data.status", "event.data.title", "event.data.summary",
        "event.data.description", "event.data.urgency", "event.data.number", "event.data.created_at",
        "event.data.html_url", "event.data.service", "event.data.service.summary", "event.data.priority",
        "event.data.priority.summary", "event.data.escalation_policy",
        "event.data.escalation_policy.summary",
    ],
    "cloudwatch": [
        "Type", "TopicArn", "SubscribeURL", "Message", "Message.AlarmName", "Message.NewStateValue",
        "Message.NewStateReason", "Message.AlarmDescription", "Message.AWSAccountId", "Message.Region",
        "Message.AlarmArn", "Message.StateChangeTime", "Message.Trigger", "Message.Trigger.MetricName",
        "Message.Trigger.Namespace", "Message.Trigger.Dimensions", "Message.Trigger.Dimensions.*",
        "Message.Trigger.Dimensions.*.name", "Message.Trigger.Dimensions.*.value",
    ],
    "zabbix": [
        "status", "hostname", "host", "trigger", "trigger_id", "triggerid", "item", "link", "severity",
        "event_time", "time", "message", "description",
    ],
    "datadog": [
        "title", "event_type", "body", "alert_transition", "alert_type", "priority", "alert_scope",
        "hostname", "aggregate", "alert_id", "tags", "tags.*", "last_updated", "date", "id", "link", "url",
    ],
    "generic": [
        "title", "status", "severity", "fingerprint", "labels", "labels.host", "annotations",
        "description", "message", "source", "starts_at", "ends_at", "generator_url", "url",
    ],
}  # fmt: skip

# any text, lone surrogates and NUL included: what a broken sender might produce
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
    | st.binary(max_size=8)
)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)

# words the formats use, edge times and numbers as text, and text a JSON decoder gives but a sender should not
WORDS = [
    "firing", "resolved", "FIRING", "Resolved", "pending", "paused", "alerting", "no_data", "ok", "OK",
    "ALARM", "INSUFFICIENT_DATA", "PROBLEM", "RESOLVED", "Notification", "SubscriptionConfirmation",
    "UnsubscribeConfirmation", "incident.triggered", "incident.resolved", "incident.annotated",
    "service.created", "incident", "high", "low", "P1", "sev-2", "Disaster", "critical", "warning",
    "info", "error", "success", "Recovered", "[Recovered] x", "[Triggered] ", "[warn]", "[no data]y",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00", "2024-02-30T00:00:00Z",
    "2019-02-15T23:53:45.093+0000",
    "1591216985000", "99999999999999999999", "0", "-1", " 12 ", "1e400", "NaN", "", " ", "\t\n",
    "https://z.example/?triggerid=123&x=1", "?triggerid=", "v1=", "null", "{}", "[]", '{"AlarmName": 1}',
    "env:prod,team:db", ":", "a:b:c", ",,,", "\x00", "a\x00b", "\ud800", "x\udfff", "\u202e\u0301",
]  # fmt: skip
NUMBERS = [
    0, -1, 1, 2**63, -(2**63) - 1, 10**4299, -(10**4299), 1e308, -1e308, 5e-324, float("inf"),
    float("-inf"), float("nan"), 100_000_000_001, 253_402_300_800, 253_402_300_800_000,
]  # fmt: skip


def _nested(depth: int):
    value: object = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _junk_pool(size: int = 500) -> list:
    """A fixed, varied pool of junk: odd text, numbers of every size, small nested containers.

    Drawing one entry costs Hypothesis a single choice, where building the same value
    from its own strategies costs dozens: that is what lets 10,000 cases per format fit
    in CI's budget. Hypothesis' own text, integers and floats are drawn beside it.
    """
    rnd = random.Random(20_240_501)
    pieces = [
        "a", "Z", "0", "9", " ", "\t", "\n", "\x00", "\x7f", "\ud800", "\udfff", "é", "ß", "🔥", "\u202e",
        "\u0301", "\ufeff", "\uffff", "\\", '"', "{", "}", "[", ":", ",", "=", "%s", "<b>", "v1=", "'",
    ]  # fmt: skip
    keys = sorted({path.split(".")[-1] for fields in FIELDS.values() for path in fields} - {"*"})

    def leaf():
        kind = rnd.randrange(7)
        if kind == 0:
            return "".join(rnd.choice(pieces) for _ in range(rnd.randrange(12)))
        if kind == 1:
            return rnd.choice([-1, 1]) * (10 ** rnd.randrange(0, 40) + rnd.randrange(10))
        if kind == 2:
            return rnd.choice([-1.0, 1.0]) * 10.0 ** rnd.randrange(-320, 309)
        if kind == 3:
            return rnd.choice([None, True, False])
        if kind == 4:
            return bytes(rnd.randrange(256) for _ in range(rnd.randrange(6)))
        if kind == 5:
            return rnd.choice(NUMBERS)
        return rnd.choice(WORDS)

    def value(depth: int):
        if depth >= 3 or rnd.random() < 0.5:
            return leaf()
        if rnd.random() < 0.5:
            return [value(depth + 1) for _ in range(rnd.randrange(4))]
        return {rnd.choice([*keys, *WORDS, str(leaf())]): value(depth + 1) for _ in range(rnd.randrange(4))}

    hand_picked = [
        None, [], {}, [None], [[]], {"": None}, {"summary": None}, {"summary": {"x": 1}}, ["a", 1, None],
        {"name": 1, "value": 2}, {"name": "\x00", "value": "v"}, _nested(50), _nested(120), list(range(300)),
        {f"k{i}": "v" for i in range(300)}, *WORDS, *NUMBERS,
    ]  # fmt: skip
    return hand_picked + [value(0) for _ in range(size - len(hand_picked))]


POOL = _junk_pool()
# long text and deep JSON text, built on demand so that failure reports stay readable
LONG = st.tuples(
    st.sampled_from(["x", "é", "🔥", "9", "[", '{"a":']), st.sampled_from([257, 1025, 4097, 70_000])
).map(lambda t: t[0] * t[1])
# pool entries are copied: a mutation must never change a shared value
JUNK = st.one_of(
    st.integers(0, len(POOL) - 1).map(lambda i: copy.deepcopy(POOL[i])),
    st.integers(0, len(POOL) - 1).map(lambda i: copy.deepcopy(POOL[-1 - i])),
    LONG,
    TEXT,
    st.integers(),
    st.floats(),
)
KEYS = TEXT | st.sampled_from(sorted({path.split(".")[0] for fields in FIELDS.values() for path in fields}))


def seeds(name: str) -> list[str]:
    """The format's real payloads as JSON text (decoded afresh for every case)."""
    loaded = [json.loads((FIXTURES / f).read_text(encoding="utf-8")) for f in SEEDS[name]]
    if name in COMPOSED:
        loaded.append(COMPOSED[name])
    for payload in loaded:  # CloudWatch's alarm is a JSON string: mutate it decoded
        if isinstance(payload.get("Message"), str) and payload["Message"].startswith("{"):
            payload["Message"] = json.loads(payload["Message"])
    return [json.dumps(payload) for payload in loaded]


SEED_TEXTS = {name: seeds(name) for name in FORMATS}


def paths(value, limit: int = 8) -> list[tuple]:
    """The paths into a JSON value down to `limit` levels, the root excluded."""
    found, todo = [], [((), value)]
    while todo:
        prefix, item = todo.pop()
        if len(prefix) >= limit:
            continue
        children = (
            item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        )
        for key, child in children:
            found.append((*prefix, key))
            todo.append(((*prefix, key), child))
    return found


SEED_PATHS = {text: paths(json.loads(text)) for texts in SEED_TEXTS.values() for text in texts}


def get_at(value, path):
    for part in path:
        value = value[part]
    return value


def set_at(root, path, new):
    """`root` with `new` at `path`, objects made on the way where the path is missing."""
    if not path:
        return new
    target = root
    for part, following in zip(path[:-1], path[1:], strict=True):
        if isinstance(target, dict):
            if not isinstance(target.get(part), dict | list):
                target[part] = [] if isinstance(following, int) else {}
            target = target[part]
        elif isinstance(target, list) and isinstance(part, int) and part < len(target):
            target = target[part]
        else:
            return root
    last = path[-1]
    if isinstance(target, dict):
        target[last] = new
    elif isinstance(target, list):
        if isinstance(last, int) and last < len(target):
            target[last] = new
        else:
            target.append(new)
    return root


def field_path(template: str, index: int) -> tuple:
    return tuple(index if part == "*" else part for part in template.split("."))


def encode(value) -> str:
    """JSON text, as a sender would put it in a string (SNS `Message`, a signed raw body)."""
    return json.dumps(value, default=lambda b: b.decode("latin-1"))


# a change is aimed at a field the parser reads three times in five, elsewhere otherwise
GENERAL = ["replace"] * 6 + ["delete"] * 3 + ["repeat", "wrap", "wrap"]
ACTIONS = {name: [*FIELDS[name], *GENERAL] for name in FIELDS}
WRAPS = [lambda v: [v], lambda v: {"value": v}, encode]


@st.composite
def mutated(draw, name: str) -> dict:
    """A real payload of format `name` with one to three changes (few draws each: see `_junk_pool`)."""
    seed = draw(st.sampled_from(SEED_TEXTS[name]))
    payload, candidates = json.loads(seed), SEED_PATHS[seed]
    actions = ACTIONS[name]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        choice, index = divmod(draw(st.integers(0, len(actions) * 256 - 1)), 256)  # one draw, not two
        action = actions[choice]
        if action not in GENERAL:
            payload, candidates = set_at(payload, field_path(action, index % 4), draw(JUNK)), None
            continue
        candidates = candidates if candidates is not None else paths(payload)
        if not candidates:
            break
        path = candidates[index % len(candidates)]
        parent, last = get_at(payload, path[:-1]), path[-1]
        if action == "replace":
            parent[last] = draw(JUNK)
        elif action == "delete":
            del parent[last]
        elif action == "repeat" and isinstance(parent[last], list):
            parent[last] = parent[last] * [0, 2, 3, 12][index % 4]
        elif action == "wrap":
            parent[last] = WRAPS[index % len(WRAPS)](parent[last])
        candidates = None
    if isinstance(payload.get("Message"), dict | list) and draw(st.integers(0, 7)):
        payload["Message"] = encode(payload["Message"])  # mostly; left decoded, it is a wrong type
    return payload


def payloads(name: str):
    """Shaped like the format four times in five; otherwise any object."""
    shaped = mutated(name)
    return st.one_of(shaped, shaped, shaped, shaped, st.dictionaries(KEYS, JUNK, max_size=6))
