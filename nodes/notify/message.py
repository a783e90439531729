"""Build the message a notify node sends, from its config and what the run found.

A definition can just say `{"driver": "slack"}`: title, text and severity then come
from the incident, the intelligence result and the check results of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodes.base import NodeContext
from nodes.notify import facts

__all__ = [
    "SEVERITY_COLOURS",
    "SEVERITY_EMOJI",
    "Message",
    "alertmanager_subject",
    "build_message",
    "severity_level",
    "truncate",
]

TRUNCATED = "… [truncated]"

# Every driver speaks these four levels (PagerDuty's own set); anything else maps onto them.
_LEVELS = {
    "critical": "critical",
    "fatal": "critical",
    "emergency": "critical",
    "disaster": "critical",
    "page": "critical",
    "high": "error",
    "error": "error",
    "major": "error",
    "warning": "warning",
    "warn": "warning",
    "average": "warning",
    "medium": "warning",
    "minor": "warning",
}
SEVERITY_COLOURS = {
    "critical": "#d00000",
    "error": "#e8590c",
    "warning": "#f2c744",
    "info": "#439fe0",
    "resolved": "#2eb67d",
}
SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "error": ":large_orange_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
    "resolved": ":white_check_mark:",
}


def severity_level(severity: str | None) -> str:
    """`critical`, `error`, `warning` or `info`: alert sources use free text for severity."""
    return _LEVELS.get(str(severity or "").strip().lower(), "info")


@dataclass
class Message:
    title: str
    text: str
    severity: str = "info"
    status: str = "firing"
    summary: str | None = None
    probable_cause: str | None = None
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    incident: dict[str, Any] | None = None
    run: dict[str, Any] = field(default_factory=dict)
    headline: str = ""  # the title without the RESOLVED prefix: stable across firing and resolve
    assessed_severity: str | None = None  # what the analysis thinks, when it differs (never routed)
    target: str | None = None
    labels: str | None = None  # every label, `k=v, ...`, collapsed past a dozen
    partial: bool = False  # some of the incident's alerts resolved, others still fire
    quote: str | None = None  # the page a resolve answers, for chats that cannot thread
    alert_lines: list[str] = field(default_factory=list)  # a group's alerts, with their own labels
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # ctx.data(), for body templates

    @property
    def level(self) -> str:
        return severity_level(self.severity)

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    @property
    def severity_line(self) -> str:
        """`WARNING (assessed: critical)`: the routed level, and the analysis's opinion beside it."""
        key = "resolved" if self.resolved else self.level
        line = key.upper()
        if self.partial and not self.resolved:
            line += " (partly resolved)"
        if self.assessed_severity and not self.resolved:
            line += f" (assessed: {self.assessed_severity})"
        return line

    def as_dict(self) -> dict[str, Any]:
        out = {
            "title": self.title,
            "text": self.text,
            "severity": self.severity,
            "status": self.status,
        }
        if self.assessed_severity:
            out["assessed_severity"] = self.assessed_severity
        return out


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a visible marker when anything was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def build_message(
    ctx: NodeContext,
    *,
    title: str | None = None,
    message: str | None = None,
    severity: str | None = None,
    severity_from_analysis: bool = False,
) -> Message:
    """The message for this run; explicit (already rendered) config values win.

    The severity is the source's (the firing alerts', else the checks'); an analysis's own
    view is shown beside it as `assessed`, and routes only with `severity_from_analysis`.
    """
    analysis = _latest(ctx, lambda out: "summary" in out and "recommendations" in out)
    checks = [out for out in ctx.nodes.values() if isinstance(out, dict) and "checks" in out]
    incident = ctx.incident
    status = "resolved" if incident and incident.get("status") == "resolved" else "firing"
    firing, resolved = facts.split_alerts(incident)
    partial = status == "firing" and bool(firing) and bool(resolved)

    routed = severity or _severity(analysis, incident, checks, severity_from_analysis)
    assessed = None
    if analysis and analysis.get("severity") and not severity:
        if severity_level(analysis["severity"]) != severity_level(routed):
            assessed = str(analysis["severity"])
    if not title:
        if incident and incident.get("title"):
            title = incident["title"]
        elif analysis and analysis.get("summary"):
            title = _first_line(analysis["summary"])
        else:
            title = f"{ctx.run.definition or 'pipeline'}: {_check_headline(checks)}"
    headline = title.removeprefix("RESOLVED: ")
    if status == "resolved":
        title = f"RESOLVED: {headline}"
    if not message:
        message = _default_text(analysis, incident, checks, routed, title)
    done = status == "resolved"
    alerts = (incident or {}).get("alerts") or []
    targets = list(dict.fromkeys(t for t in (facts.target_of(a) for a in alerts) if t))
    labels = (incident or {}).get("labels") or (alerts[0].get("labels") if len(alerts) == 1 else None)
    links = facts.alert_links(incident, ctx.payload)
    run_link = facts.prefect_link(ctx.run.as_dict())
    if run_link:
        links.append(run_link)

    return Message(
        title=title,
        text=message,
        severity=routed,
        status=status,
        summary=_summary(analysis, status, partial, message),
        probable_cause=_cause(analysis, routed) if analysis and not done else None,
        recommendations=list(analysis.get("recommendations") or []) if analysis and not done else [],
        fields=_fields(ctx, incident, targets, labels),
        links=links,
        incident=incident,
        run=ctx.run.as_dict(),
        headline=headline,
        data=ctx.data(),
        assessed_severity=assessed,
        target=", ".join(targets[:5]) + (f" +{len(targets) - 5}" if len(targets) > 5 else "") or None,
        labels=facts.label_text(labels) if labels else None,
        partial=partial,
        quote=facts.original(incident, headline) if (status == "resolved" or partial) else None,
        alert_lines=facts.alert_lines(incident),
    )


def alertmanager_subject(message: Message) -> str:
    """`[FIRING:2] HighMemory (db-01 web-01)`: the subject on-call people already filter on."""
    incident = message.incident or {}
    alerts = incident.get("alerts") or []
    if message.resolved:
        prefix = "[RESOLVED]"
    else:
        firing = incident.get("firing_count")
        if firing is None:
            firing = sum(1 for a in alerts if a.get("status", "firing") == "firing") or 1
        prefix = f"[FIRING:{firing}]"
    names = {(a.get("labels") or {}).get("alertname") for a in alerts} - {None}
    name = names.pop() if len(names) == 1 else message.headline
    hosts = sorted(h for h in (_host(a) for a in alerts) if h)
    suffix = f" ({' '.join(dict.fromkeys(hosts))})" if hosts else ""
    return truncate(f"{prefix} {name}{suffix}", 250)


def _host(alert: dict[str, Any]) -> str | None:
    labels = alert.get("labels") or {}
    for key in ("instance", "host", "hostname", "node"):
        if labels.get(key):
            return str(labels[key])
    return alert.get("host") or None


def _latest(ctx: NodeContext, predicate) -> dict[str, Any] | None:
    found = None
    for out in ctx.nodes.values():
        if isinstance(out, dict) and predicate(out):
            found = out
    return found


_CHECK_SEVERITY = {"critical": "critical", "warning": "warning", "unknown": "warning", "ok": "info"}


_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _worst(severities) -> str | None:
    found = [str(s) for s in severities if s]
    return min(found, key=lambda s: _RANK[severity_level(s)]) if found else None


def _severity(analysis, incident, checks, trust_analysis: bool = False) -> str:
    if trust_analysis and analysis and analysis.get("severity"):
        return str(analysis["severity"])
    if incident:
        firing, _ = facts.split_alerts(incident)
        worst = _worst(a.get("severity") for a in firing) if incident.get("status") != "resolved" else None
        if worst or incident.get("severity"):
            return worst or str(incident["severity"])
    if checks:
        worst = "info"
        for out in checks:
            level = _CHECK_SEVERITY.get(str(out.get("status")), "info")
            if level == "critical" or (level == "warning" and worst == "info"):
                worst = level
        return worst
    # no alert and no check: the local rules' verdict on measured metrics is the source
    # (deterministic); a model's is not trusted to route.
    if analysis and analysis.get("provider") == "local" and analysis.get("severity"):
        return str(analysis["severity"])
    return "info"


def _check_headline(checks) -> str:
    bad = [c for out in checks for c in out.get("checks", []) if c.get("status") != "ok"]
    if not checks:
        return "run finished"
    if not bad:
        return "all checks ok"
    return ", ".join(f"{c.get('name')} {c.get('status')}" for c in bad[:5])


def _first_line(text: str) -> str:
    return truncate(str(text).strip().splitlines()[0] if str(text).strip() else "", 150)


def _default_text(analysis, incident, checks, severity: str = "info", title: str = "") -> str:
    lines: list[str] = []
    firing, resolved = facts.split_alerts(incident)
    if incident and incident.get("status") == "resolved":
        took = facts.fired_for(incident)
        names = ", ".join(facts.alert_name(a) for a in (incident.get("alerts") or [])[:10])
        lines.append(f"Resolved{f' after firing for {took}' if took else ''}: {names or title}.")
    elif firing and resolved:
        lines.append(f"{len(resolved)} of {len(firing) + len(resolved)} alerts resolved: " + _names(resolved))
        lines.append(f"Still firing ({_worst(a.get('severity') for a in firing)}): " + _names(firing))
    if analysis and not (incident and incident.get("status") == "resolved"):
        if analysis.get("summary"):
            lines.append(str(analysis["summary"]))
        if cause := _cause(analysis, severity):
            lines.append(f"Probable cause: {cause}")
        recs = analysis.get("recommendations") or []
        if recs:
            lines.append("Recommendations:")
            for rec in recs:
                priority = rec.get("priority", "")
                lines.append(f"- [{priority}] {rec.get('title', '')}: {rec.get('description', '')}")
    elif incident and not lines:
        for alert in (incident.get("alerts") or [])[:20]:
            lines.append(f"- [{alert.get('status')}] {alert.get('title')}: {alert.get('description') or ''}")
    if incident and incident.get("truncated_alerts"):  # the group is bigger than what was sent
        lines.append(f"+{incident['truncated_alerts']} alerts not included by Alertmanager")
    for out in checks:
        for check in out.get("checks", []):
            if check.get("status") != "ok":
                lines.append(f"{check.get('status', '').upper()}: {check.get('message')}")
    if lines:
        return "\n".join(lines)
    if severity_level(severity) == "info":
        return "No problems found."
    return f"{title or 'Alert'}: severity {severity}; no further details were given."


def _cause(analysis: dict[str, Any], severity: str) -> str | None:
    """The analysis's cause; for a problem it found no cause of, says so plainly."""
    if analysis.get("probable_cause"):
        return str(analysis["probable_cause"])
    return "none found" if severity_level(severity) != "info" else None


def _summary(analysis, status: str, partial: bool, text: str) -> str | None:
    """What a driver shows as the body: the resolve story when there is one, else the analysis."""
    if status == "resolved":
        return text.splitlines()[0] if text else None
    if not analysis or not analysis.get("summary"):
        return None
    if partial:
        return "\n".join(text.splitlines()[:2] + [str(analysis["summary"])])
    return str(analysis["summary"])


def _names(alerts: list[dict[str, Any]]) -> str:
    shown = ", ".join(facts.alert_name(a) for a in alerts[:10])
    return shown + (f" (+{len(alerts) - 10} more)" if len(alerts) > 10 else "")


def _fields(ctx: NodeContext, incident, targets: list[str], labels) -> dict[str, str]:
    fields: dict[str, str] = {}
    if targets:
        fields["target"] = ", ".join(targets[:5]) + (f" +{len(targets) - 5}" if len(targets) > 5 else "")
    if labels:
        fields["labels"] = facts.label_text(labels)
    if value := facts.prometheus_value(ctx.nodes):
        fields["value"] = value
    if signals := facts.target_signals(ctx.nodes):
        fields["target now"] = signals
    also, hushed = facts.neighbours(ctx.nodes)
    if also:
        fields["also firing"] = also.removeprefix("also firing for ")
    if hushed:
        fields["silenced"] = hushed
    fields.update({"definition": ctx.run.definition, "trace_id": ctx.run.trace_id})
    # RunInfo says "development" when nobody named one: only a named environment is shown
    if ctx.run.environment and ctx.run.environment != "development":
        fields["environment"] = ctx.run.environment
    if incident:
        fields["incident"] = str(incident.get("id", ""))
        if incident.get("alert_count") is not None:
            fields["alerts"] = str(incident["alert_count"])
    return fields
