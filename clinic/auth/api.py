from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from clinic.auth import service
from clinic.auth.policy import client_addr, current_actor, public, require
from clinic.auth.schemas import CreateTokenSchema, CreateUserSchema, TokenSchema, UserListSchema, UserSchema
from clinic.extensions import Blueprint

blp = Blueprint("auth_api", __name__, url_prefix="/api/v1", description="Sign-in tokens and users")


@blp.route("/auth/tokens")
class Tokens(MethodView):
    @public
    @blp.arguments(CreateTokenSchema)
    @blp.response(201, TokenSchema)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Exchange email, password (and a TOTP code when enrolled) for a bearer token."""
        user = service.authenticate(
            email=args["email"], password=args["password"], totp_code=args["totp_code"], client_addr=client_addr()
        )
        token, expires_at = service.issue_token(user=user, ttl_hours=args["ttl_hours"])
        return {"token": token, "expires_at": expires_at}


@blp.route("/auth/tokens/current")
class CurrentToken(MethodView):
    @require("self.manage_tokens")
    @blp.response(204)
    def delete(self) -> None:
        """Revoke the token this request carries."""
        raw = request.headers["Authorization"].partition(" ")[2].strip()
        service.revoke_token(actor=current_actor(), raw=raw)


@blp.route("/users/me")
class Me(MethodView):
    @require("self.view")
    @blp.response(200, UserSchema)
    def get(self) -> Any:
        return current_actor()


@blp.route("/users")
class Users(MethodView):
    @require("users.view")
    @blp.response(200, UserListSchema)
    def get(self) -> dict[str, Any]:
        return {"items": service.list_users()}

    @require("users.manage")
    @blp.arguments(CreateUserSchema)
    @blp.response(201, UserSchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.create_user(actor=current_actor(), **args)
