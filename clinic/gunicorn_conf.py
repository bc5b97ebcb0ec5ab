"""gunicorn settings for ``gunicorn -c python:clinic.gunicorn_conf clinic.wsgi:app`` (Dockerfile, compose).

The access log never shows a query string, a token in a path or a referring URL (SYS-07): the
app's own request log line (clinic.auth.policy) names the endpoint and status already.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from clinic.core.logging import redact_path

accesslog = "-"
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(D)sus'


class RedactingLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = redact_path(environ.get("PATH_INFO", ""))
        atoms.update(
            r=f"{environ.get('REQUEST_METHOD', '-')} {path} {environ.get('SERVER_PROTOCOL', '-')}",
            U=path,
            q="",
            f=redact_path(atoms.get("f", "-")) if atoms.get("f", "-") != "-" else "-",
        )
        return atoms


logger_class = RedactingLogger
