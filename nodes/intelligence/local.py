"""`local` provider: deterministic rules over the run's metrics, checks and alerts; no network."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.base import NodeContext
from nodes.intelligence.analysis import Analysis
from nodes.intelligence.prompt import split_outputs
from nodes.intelligence.rules import Finding, findings

__all__ = ["MODEL", "USES_PROMPT", "Config", "analyze"]

MODEL = "rules-v1"
USES_PROMPT = False


class Config(BaseModel):
    """The local rules take no settings."""

    model_config = ConfigDict(extra="forbid")


def analyze(config: Config, ctx: NodeContext, prompt: Any = None, *, client: Any = None) -> dict[str, Any]:
    """Analyse the run with fixed rules: the answer when no model may or can be asked."""
    found = findings(ctx)
    analysis = _conclude(found, ctx)
    return {"analysis": analysis, "model": MODEL, "input_tokens": 0, "output_tokens": 0}


def _conclude(found: list[Finding], ctx: NodeContext) -> Analysis:
    if not found:
        contexts, checks, _ = split_outputs(ctx)
        looked = [f"{sum(len(o.get('checks') or []) for _, o in checks)} check(s)"] if checks else []
        looked += ["host metrics"] if contexts else []
        looked += ["the incident"] if ctx.incident else []
        what = f" in {', '.join(looked)}" if looked else " (no metrics, checks or alerts were collected)"
        return Analysis(summary=f"No problems found{what}.", probable_cause="", severity="info")
    top = found[0]
    summary = top.summary
    if len(found) > 1:
        more = "; ".join(f.summary.rstrip(".") for f in found[1:4])
        extra = f" (+{len(found) - 4} more)" if len(found) > 4 else ""
        summary = f"{summary} Also: {more}{extra}."
    recommendations, titles = [], set()
    for finding in found:
        for rec in finding.recommendations:
            if rec["title"] not in titles:
                titles.add(rec["title"])
                recommendations.append(rec)
    return Analysis.model_validate(
        {
            "summary": summary,
            "probable_cause": top.cause,
            "severity": top.severity,
            "recommendations": recommendations[:8],
        }
    )
