"""Reading HTML forms with the API's own schemas, shared by every domain's pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import marshmallow as ma
from flask import render_template, request

from clinic.core.errors import DomainError

CHECKED = frozenset({"on", "true", "1", "yes"})
#: the patient picker's search fields (patients/_picker.html): a way to find the value, not the value
PICKER_PREFIX = "picker_"
WHOLE = re.compile(r"^[+-]?[0-9]{1,18}$")
_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def form_payload(schema: ma.Schema, tz: str, source: Mapping[str, str]) -> dict[str, Any]:
    """A form as the API's JSON would carry it, for the API's schema to load.

    Empty strings, the CSRF token and the picker's search fields are dropped (optional fields take
    their defaults); whole numbers become ints for strict Integer fields; checkboxes become
    booleans; a ``datetime-local`` value is read in the given time zone. Anything else is left for the schema to judge.
    """
    data: dict[str, Any] = {
        k: v for k, v in source.items() if k != "csrf_token" and v != "" and not k.startswith(PICKER_PREFIX)
    }
    for name, fld in schema.fields.items():
        key = fld.data_key or name
        value = data.get(key)
        if isinstance(fld, ma.fields.Boolean):
            data[key] = value in CHECKED
        elif isinstance(value, str) and isinstance(fld, ma.fields.Integer) and WHOLE.match(value):
            data[key] = int(value)
        elif isinstance(value, str) and isinstance(fld, ma.fields.AwareDateTime) and _LOCAL_DATETIME.match(value):
            data[key] = datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz)).isoformat()
    return data


def flat_errors(messages: Any, prefix: str = "", *, transparent: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Field -> messages; nested ones under dotted keys (``lines.0.counted_mg``), except below the
    ``transparent`` keys, whose children keep their own names (a form's ``answers.pregnant`` is ``pregnant``)."""
    if isinstance(messages, dict):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            name = str(key) if prefix in ("", *transparent) else f"{prefix}.{key}"
            flat.update(flat_errors(value, name, transparent=transparent))
        return flat
    items = messages if isinstance(messages, list) else [messages]
    return {prefix or "_schema": [str(m) for m in items]}


#: never sent back to the browser when a form is shown again
SECRET_FIELDS = frozenset(
    {
        "csrf_token",
        "password",
        "witness_password",
        "witness_totp_code",
        "second_witness_password",
        "second_witness_totp_code",
    }
)


def refused(
    template: str,
    exc: ma.ValidationError | DomainError,
    *,
    transparent: tuple[str, ...] = (),
    unlisted: Collection[str] = (),
    rename: Callable[[dict[str, list[str]]], dict[str, list[str]]] | None = None,
    **context: Any,
) -> Any:
    """The same page again: the errors by their fields, the message, and what was typed (no secrets).

    ``unlisted`` error keys carry data the page shows its own way (a booking's conflicts), not as
    field errors; ``rename`` maps the API's field names to the form's.
    """
    if isinstance(exc, ma.ValidationError):
        messages, message, status, headers = exc.normalized_messages(), None, 422, {}
    else:
        messages = {k: v for k, v in (exc.errors or {}).items() if k not in unlisted}
        message, status, headers = exc.detail, exc.http_status, exc.headers
    errors = flat_errors(messages, transparent=transparent) if messages else {}
    errors = rename(errors) if rename else errors
    context.setdefault("form", {k: v for k, v in request.form.items() if k not in SECRET_FIELDS})
    return render_template(template, errors=errors, error=message, **context), status, headers


def form_page(template: str, **context: Any) -> Any:
    """A form's first showing; the query string may preselect values (``?container_id=12``)."""
    return render_template(template, form=request.args.to_dict(), errors={}, error=None, **context)


def same_site_path(target: str | None) -> str | None:
    """``target`` if it can only mean a path on this site, else None (no open redirect, SYS-07).

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so "/", a tab, then
    "/evil.example" is "//evil.example": any control character, space or backslash is refused
    outright, and what is left must be a path with no scheme and no host.
    """
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//"):
        return None
    if any(ch <= " " or ch in "\\\x7f" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
