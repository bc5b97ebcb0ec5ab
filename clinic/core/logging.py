"""Structured logs: one JSON object per line, ids only.

Messages are serialised with json.dumps, so CR/LF in any value cannot forge a line (CWE-117).
Request bodies, query strings and patient fields are never passed to a logger.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            body["exc_type"] = record.exc_info[0].__name__
        return json.dumps(body, default=str)


#: a path segment kept as is in a log line: an id or a lower-case word; anything else (a calendar
#: feed's token, a name) is replaced. Query strings are dropped whole (search terms, dates of birth).
_PLAIN_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,23}$")
_URL_IN_TEXT = re.compile(r"(?:https?://[^\s/\"']*)?/[^\s\"']*")
REDACTED = "-"


def redact_path(url: str) -> str:
    """A URL or path as a log line may show it (SYS-07): no query, no token-like segment."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return "/".join(part if not part or _PLAIN_SEGMENT.match(part) else REDACTED for part in path.split("/"))


def redact_text(text: str) -> str:
    """Every path or URL inside a free-text line (a server's request line) redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_path(m.group(0)), text)


class RedactRequestLines(logging.Filter):
    """For servers that log request lines we do not format (werkzeug's development server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in record.args)
        return True


def configure(level: str = "INFO") -> None:
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactRequestLines) for f in werkzeug.filters):
        werkzeug.addFilter(RedactRequestLines())
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
