"""Extension objects, created unbound and attached in ``create_app``."""

from __future__ import annotations

import http
from typing import Any

import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from celery import Celery, Task
from flask import Flask
from flask_smorest import Api as _SmorestApi
from flask_smorest import Blueprint as _SmorestBlueprint
from flask_smorest.utils import prepare_response
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from webargs.flaskparser import FlaskParser

from clinic.core.db import Base
from clinic.core.replica import RoutingSession


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every API error is answered."""

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    code = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict()


class _Converter(OpenAPIConverter):
    """A schema's ``OPENAPI_RULES`` (JSON Schema keywords: ``minProperties``, ``anyOf``, ``oneOf``...)
    join its document: the cross-field rules its validators enforce, stated where OpenAPI 3.0 can."""

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        ret: dict[str, Any] = super().schema2jsonschema(schema)
        rules = getattr(schema if isinstance(schema, type) else type(schema), "OPENAPI_RULES", None)
        return {**ret, **rules} if rules else ret


class _MarshmallowPlugin(MarshmallowPlugin):
    Converter = _Converter


class Api(_SmorestApi):
    """flask-smorest, but errors go through our one handler and are documented as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *args: Any, **kwargs: Any) -> None:
        from clinic.core.fields import openapi_attributes

        kwargs.setdefault("marshmallow_plugin", _MarshmallowPlugin())
        super()._init_spec(*args, **kwargs)
        # the formats our own fields enforce (decimal strings, zones, dates), stated in the document
        self.ma_plugin.converter.add_attribute_function(openapi_attributes)

    def _register_error_handlers(self) -> None:
        # clinic.core.errors registers the single handler for HTML and JSON alike.
        pass

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, "application/problem+json")
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "Problem details", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, "application/problem+json")
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


class _ArgumentsParser(FlaskParser):
    """webargs' parser, but an arguments schema given as a class is made once, not for every request:
    making one deep-copies its declared fields, which cost more than loading the request's body.
    Our schemas keep no state of a load on themselves (the response schemas are shared the same way)."""

    def __init__(self) -> None:
        super().__init__()
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: Any) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)


class Blueprint(_SmorestBlueprint):
    """flask-smorest's blueprint with :class:`_ArgumentsParser`; every API module uses this one."""

    ARGUMENTS_PARSER = _ArgumentsParser()


# RoutingSession: plain reads inside clinic.core.replica.reads() go to CLINIC_REPLICA_URL.
db = SQLAlchemy(model_class=Base, session_options={"class_": RoutingSession})
api = Api()
csrf = CSRFProtect()


def celery_init_app(app: Flask) -> Celery:
    """The Flask docs' pattern: every task runs inside an app context, as one unit of work."""
    from clinic.core import tx

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return tx.commits(self.run)(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
