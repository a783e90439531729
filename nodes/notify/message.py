"""Build the message a notify node sends, from its config and what the run found.

A definition can just say `{"driver": "slack"}`: title, text and severity then come
from the incident, the intelligence result and the check results of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodes.base import NodeContext

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
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # ctx.data(), for body templates

    @property
    def level(self) -> str:
        return severity_level(self.severity)

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "text": self.text,
            "severity": self.severity,
            "status": self.status,
        }


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
) -> Message:
    """The message for this run; explicit (already rendered) config values win."""
    analysis = _latest(ctx, lambda out: "summary" in out and "recommendations" in out)
    checks = [out for out in ctx.nodes.values() if isinstance(out, dict) and "checks" in out]
    incident = ctx.incident
    status = "resolved" if incident and incident.get("status") == "resolved" else "firing"

    severity = severity or _severity(analysis, incident, checks)
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
        message = _default_text(analysis, incident, checks)

    return Message(
        title=title,
        text=message,
        severity=severity,
        status=status,
        summary=analysis.get("summary") if analysis else None,
        probable_cause=analysis.get("probable_cause") if analysis else None,
        recommendations=list(analysis.get("recommendations") or []) if analysis else [],
        fields=_fields(ctx, incident),
        links=_links(incident),
        incident=incident,
        run=ctx.run.as_dict(),
        headline=headline,
        data=ctx.data(),
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


def _severity(analysis, incident, checks) -> str:
    if analysis and analysis.get("severity"):
        return str(analysis["severity"])
    if incident and incident.get("severity"):
        return str(incident["severity"])
    worst = "info"
    for out in checks:
        level = _CHECK_SEVERITY.get(str(out.get("status")), "info")
        if level == "critical" or (level == "warning" and worst == "info"):
            worst = level
    return worst


def _check_headline(checks) -> str:
    bad = [c for out in checks for c in out.get("checks", []) if c.get("status") != "ok"]
    if not checks:
        return "run finished"
    if not bad:
        return "all checks ok"
    return ", ".join(f"{c.get('name')} {c.get('status')}" for c in bad[:5])


def _first_line(text: str) -> str:
    return truncate(str(text).strip().splitlines()[0] if str(text).strip() else "", 150)


def _default_text(analysis, incident, checks) -> str:
    lines: list[str] = []
    if analysis:
        if analysis.get("summary"):
            lines.append(str(analysis["summary"]))
        if analysis.get("probable_cause"):
            lines.append(f"Probable cause: {analysis['probable_cause']}")
        recs = analysis.get("recommendations") or []
        if recs:
            lines.append("Recommendations:")
            for rec in recs:
                priority = rec.get("priority", "")
                lines.append(f"- [{priority}] {rec.get('title', '')}: {rec.get('description', '')}")
    elif incident:
        for alert in (incident.get("alerts") or [])[:20]:
            lines.append(f"- [{alert.get('status')}] {alert.get('title')}: {alert.get('description') or ''}")
    if incident and incident.get("truncated_alerts"):  # the group is bigger than what was sent
        lines.append(f"+{incident['truncated_alerts']} alerts not included by Alertmanager")
    for out in checks:
        for check in out.get("checks", []):
            if check.get("status") != "ok":
                lines.append(f"{check.get('status', '').upper()}: {check.get('message')}")
    return "\n".join(lines) or "No problems found."


def _fields(ctx: NodeContext, incident) -> dict[str, str]:
    fields = {"definition": ctx.run.definition, "trace_id": ctx.run.trace_id}
    if ctx.run.environment:
        fields["environment"] = ctx.run.environment
    if incident:
        fields["incident"] = str(incident.get("id", ""))
        if incident.get("alert_count") is not None:
            fields["alerts"] = str(incident["alert_count"])
    return fields


def _links(incident) -> list[dict[str, str]]:
    links = []
    for alert in (incident or {}).get("alerts") or []:
        url = alert.get("generator_url")
        if url and all(link["url"] != url for link in links):
            links.append({"title": alert.get("title") or "source", "url": url})
    return links[:5]
