"""Make alert text inert in each chat's markup: text from alerts and models is data, never markup."""

from __future__ import annotations

import re

__all__ = ["markdown", "slack", "slack_link"]


def slack(text: object) -> str:
    """Slack mrkdwn: `&`, `<`, `>` escaped, so `<!channel>` does not ping and `<url|x>` links nothing."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, title: str) -> str:
    """`<url|title>` with both parts escaped; a `|` in the title would end it early."""
    return f"<{slack(url).replace('|', '%7C')}|{slack(title).replace('|', '¦')}>"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)


def markdown(text: object) -> str:
    """Teams/Discord markdown: every markup character backslash-escaped, `@everyone`/`@here` defused."""
    escaped = _MARKDOWN.sub(r"\\\1", str(text)).replace("<", "\\<")
    return _MENTION.sub("@\u200b\\1", escaped)
