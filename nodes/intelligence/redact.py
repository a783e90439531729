"""Scrub a prompt of secrets before it leaves the machine: the run's own, and common secret shapes."""

from __future__ import annotations

import re

from nodes.base import REDACTED, Secrets

__all__ = ["PATTERNS", "redact_text"]

# (name, literals, pattern, replacement). A pattern runs only when one of its literals
# occurs in the lower-cased text: most prompts hold no secret, and regex scans of a
# 30 KB prompt cost ~1 ms each. Replacements keep the key name so the model still sees
# *that* a credential was there, just not its value.
PATTERNS: list[tuple[str, tuple[str, ...], re.Pattern[str], str]] = [
    (
        "private key",
        ("private key",),
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
        REDACTED,
    ),
    ("url password", ("://",), re.compile(r"(://[^\s:/@]+:)[^\s@/]+@"), rf"\g<1>{REDACTED}@"),
    (
        "authorization",
        ("authorization",),
        re.compile(r"(?i)(authorization\s*[:=]\s*)(?!\*\*\*)[^\s\"']+(?:\s+(?!\*\*\*)[^\s,;\"']+)?"),
        rf"\g<1>{REDACTED}",
    ),
    (
        "bearer token",
        ("bearer",),
        re.compile(r"(?i)(bearer)\s+(?!\*\*\*)[A-Za-z0-9\-._~+/]{8,}=*"),
        rf"\g<1> {REDACTED}",
    ),
    (
        "api key",
        ("sk-", "rk-", "pk-"),
        re.compile(r"\b(?:sk|rk|pk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{16,}"),
        REDACTED,
    ),
    (
        "aws access key",
        ("akia", "asia", "agpa", "aida", "aroa"),
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
        REDACTED,
    ),
    (
        "github token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
        REDACTED,
    ),
    ("slack token", ("xox",), re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), REDACTED),
    ("jwt", ("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
    (
        "key=value",
        ("pass", "pwd", "secret", "key", "token"),
        re.compile(
            r"(?i)(password|passwd|pwd|secret|api[_-]?key|access[_-]?key|auth[_-]?token|token|private[_-]?key)"
            r"(\"?\s*[=:]\s*\"?)(?!\*\*\*)[^\s\"'&,;}]+"
        ),
        rf"\g<1>\g<2>{REDACTED}",
    ),
]


def redact_text(text: str, secrets: Secrets | None = None) -> tuple[str, int]:
    """`text` with the run's secret values and secret-shaped strings replaced; and how many.

    The run's own values go first (exact matches, longest first via `Secrets.redact`),
    then the shape patterns catch what the run never knew was secret: a token pasted
    into an alert annotation, a DSN with a password in a process command line.
    """
    count = 0
    if secrets is not None and len(secrets):
        scrubbed = secrets.redact(text)
        if scrubbed != text:
            count += max(1, scrubbed.count(REDACTED) - text.count(REDACTED))
            text = scrubbed
    lower = text.lower()
    lines: list[str] | None = None
    for name, literals, pattern, replacement in PATTERNS:
        if not any(literal in lower for literal in literals):
            continue
        if name == "private key":  # the only pattern that spans lines
            text, n = pattern.subn(replacement, text)
            count += n
            lines = None
            continue
        if lines is None:
            lines = text.split("\n")
        for i, line in enumerate(lines):
            if any(literal in line.lower() for literal in literals):
                lines[i], n = pattern.subn(replacement, line)
                count += n
        text = "\n".join(lines)
    return text, count
