"""One commit per request or task, and side effects only after it succeeds."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import g, has_app_context

from clinic.extensions import db

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def after_commit(fn: Callable[[], Any]) -> None:
    """Run ``fn`` once the surrounding unit of work has committed; dropped on rollback."""
    queue: list[Callable[[], Any]] = g.setdefault("_after_commit", [])
    queue.append(fn)


def _drain(run: bool) -> None:
    queue: list[Callable[[], Any]] = g.pop("_after_commit", []) if has_app_context() else []
    if not run:
        return
    for fn in queue:
        try:
            fn()
        except Exception:  # a failed side effect must not undo a committed record
            logger.exception("after-commit hook failed")


def commit() -> None:
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        _drain(run=False)
        raise
    _drain(run=True)


def commits(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view, API method or task body: commit once on success, roll back on any error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if getattr(exc, "keeps_writes", False):
                commit()  # e.g. a failed sign-in: the attempt record is what throttling counts
            else:
                db.session.rollback()
                _drain(run=False)
            raise
        commit()
        return result

    return wrapper
