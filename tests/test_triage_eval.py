"""bench/triage_eval.py's labelled scenarios meet their thresholds (severity and no foreign-host
claims 100 %, cause category >= 80 %): the local rules' quality is a test, not a hope."""

from __future__ import annotations

from bench import triage_eval


def test_the_triage_eval_meets_its_thresholds():
    results, scores = triage_eval.run_all()
    assert len(results) >= 30
    assert {"alertmanager", "grafana", "datadog"} <= {r["format"] for r in results}
    failed = {k: v for k, v in scores.items() if v < triage_eval.THRESHOLDS.get(k, 0)}
    misses = [r for r in results if not (r["severity"] and r["no_foreign_host"])]
    assert not failed and not misses, triage_eval.table(results, scores)
