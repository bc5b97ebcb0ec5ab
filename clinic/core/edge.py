"""The web edge (SYS-07): client address behind proxies, body and JSON limits, security headers.

Everything here runs for every request before the authorisation guard looks at it, so an
anonymous request is bounded as tightly as a signed-in one.
"""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix

#: pages: our own scripts only (no inline script, no eval); inline style attributes are allowed
#: (they cannot run code); never framed; forms post only here.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: anything that is not a page (JSON, files): nothing may load from it at all.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"

#: endpoints whose answers carry no PHI and may be cached (versioned static files).
CACHEABLE = frozenset({"static"})


class TooDeep(BadRequest):
    description = "The JSON body is nested too deeply."


class NotUtf8(BadRequest):
    description = "A JSON body is UTF-8 (RFC 8259, section 8.1)."


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than ``limit``, found by one scan that skips
    strings, before any parser recurses into it (json.loads on 100,000 levels is a RecursionError)."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _limit_json() -> None:
    if not request.is_json or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    # Reading the body here also applies MAX_CONTENT_LENGTH (413) before anything else runs.
    data = request.get_data(cache=True)
    # Flask's get_json (the scope check's reading, SYS-11) reads UTF-16 and UTF-32 too, as json.loads
    # does bytes, while the views' schemas read UTF-8 only. In UTF-16 a character can hold the byte of
    # a quote ("\u2200" is 00 22), so the scan below took real nesting for a string and let 100,000
    # levels through to the parser (a RecursionError, 500). One encoding for every reader: UTF-8.
    if json.detect_encoding(data) not in ("utf-8", "utf-8-sig"):
        raise NotUtf8()
    if json_depth_exceeds(data, current_app.config["MAX_JSON_DEPTH"]):
        raise TooDeep()


def _headers(response: Response) -> Response:
    headers = response.headers
    page = response.mimetype == "text/html"
    # one pass over what the view set (each setdefault or pop would scan the headers again)
    present = {name.lower() for name, _value in headers.items()}
    for name, value in (
        ("Content-Security-Policy", PAGE_CSP if page else DATA_CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # same-origin: CSRF's Referer check still works, and no URL (with its ids) leaves the site.
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ):
        if name.lower() not in present:
            headers.add(name, value)
    if request.endpoint not in CACHEABLE:
        headers["Cache-Control"] = "no-store"
        for name in _VALIDATORS & present:
            del headers[name]
    return response


#: what would let a client or proxy revalidate a cached answer (lower case)
_VALIDATORS = frozenset({"expires", "last-modified", "etag"})


def trust_proxies(app: Flask, proxies: int) -> None:
    """Believe exactly ``proxies`` hops of X-Forwarded-For/-Proto: entries a client adds itself are
    further left and ignored, so nobody picks the address that throttling counts (SYS-08)."""
    if proxies < 0:
        raise RuntimeError("CLINIC_TRUSTED_PROXIES must be 0 or more")
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    trust_proxies(app, int(app.config.get("TRUSTED_PROXIES") or 0))
    app.before_request(_limit_json)
    app.after_request(_headers)
