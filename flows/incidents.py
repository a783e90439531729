"""Text for `pipeline incidents`: the incident store as a table, or one incident in full."""

from __future__ import annotations

import json

from nodes.errors import UsageError


def incidents_table(status: str | None, limit: int) -> list[str]:
    from nodes.incidents.store import list_incidents

    if status is not None and status not in ("open", "resolved"):
        raise UsageError(f"--status must be open or resolved, not {status!r}")

    rows = list_incidents(status, limit)
    if not rows:
        return ["No incidents."]
    lines = [f"{'ID':>6}  {'STATUS':<9} {'SEVERITY':<9} {'ALERTS':>7}  {'UPDATED':<20} TITLE"]
    for row in rows:
        alerts = f"{row['firing_count']}/{row['alert_count']}"
        updated = str(row["updated_at"] or "")[:19]
        head = f"{row['id']:>6}  {row['status']:<9} {row['severity']:<9}"
        lines.append(f"{head} {alerts:>7}  {updated:<20} {row['title']}")
    return lines


def incident_lines(incident_id: str) -> list[str] | None:
    from nodes.incidents.store import get_incident

    if not incident_id.isdigit():
        raise UsageError(f"Incident id must be a number: {incident_id}")
    incident = get_incident(int(incident_id))
    if incident is None:
        return None
    lines = [
        f"Incident {incident['id']}: {incident['title']}",
        f"Status: {incident['status']}   Severity: {incident['severity']}",
        f"Key: {incident['key']}",
        f"Alerts: {incident['firing_count']} firing of {incident['alert_count']}",
        f"Created: {incident['created_at']}   Updated: {incident['updated_at']}",
        f"Resolved: {incident['resolved_at'] or '-'}",
    ]
    if incident.get("labels"):
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(incident["labels"].items())))
    lines.append("")
    for alert in incident.get("alerts") or []:
        lines.append(
            f"  {alert['status']:<9} {alert['severity']:<9} {alert['fingerprint']}  "
            f"{alert['title']}  (received {alert.get('receive_count', 1)}×)"
        )
    if incident.get("notification_state"):
        lines.append("")
        lines.append("Notification state: " + json.dumps(incident["notification_state"], sort_keys=True))
    return lines
