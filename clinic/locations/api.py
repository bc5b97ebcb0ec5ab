from __future__ import annotations

from typing import Any

from flask.views import MethodView

from clinic.auth import members, scope
from clinic.auth.policy import current_actor, require
from clinic.auth.schemas import MembershipSchema
from clinic.extensions import Blueprint
from clinic.locations import service
from clinic.locations.schemas import (
    CreateLocationSchema,
    CreateStorageSiteSchema,
    HoursSchema,
    LocationListSchema,
    LocationSchema,
    StorageSiteSchema,
    UpdateLocationSchema,
)

blp = Blueprint("locations_api", __name__, url_prefix="/api/v1", description="Registered locations")


@blp.route("/locations")
class Locations(MethodView):
    @require("locations.view")
    @blp.response(200, LocationListSchema)
    def get(self) -> dict[str, Any]:
        return {"items": scope.my_locations(current_actor())}

    @require("locations.manage")
    @blp.arguments(CreateLocationSchema)
    @blp.response(201, LocationSchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.create_location(actor=current_actor(), **args)


@blp.route("/locations/<int:location_id>")
class LocationById(MethodView):
    @require("locations.view")
    @blp.response(200, LocationSchema)
    def get(self, location_id: int) -> Any:
        return service.get_location(location_id)

    @require("locations.manage")
    @blp.arguments(UpdateLocationSchema)
    @blp.response(200, LocationSchema)
    def patch(self, args: dict[str, Any], location_id: int) -> Any:
        return service.update_location(actor=current_actor(), location_id=location_id, changes=args)


@blp.route("/locations/<int:location_id>/hours")
class LocationHours(MethodView):
    @require("locations.manage")
    @blp.arguments(HoursSchema)
    @blp.response(200, LocationSchema)
    def put(self, args: dict[str, Any], location_id: int) -> Any:
        return service.set_hours(actor=current_actor(), location_id=location_id, hours=args)


@blp.route("/locations/<int:location_id>/storage-sites")
class StorageSites(MethodView):
    @require("locations.manage")
    @blp.arguments(CreateStorageSiteSchema)
    @blp.response(201, StorageSiteSchema)
    def post(self, args: dict[str, Any], location_id: int) -> Any:
        return service.create_storage_site(actor=current_actor(), location_id=location_id, name=args["name"])


@blp.route("/locations/<int:location_id>/members/<int:user_id>")
class LocationMember(MethodView):
    @require("users.manage")
    @blp.response(200, MembershipSchema)
    def put(self, location_id: int, user_id: int) -> Any:
        """Make the user a member of the location (SYS-11); granting twice changes nothing."""
        members.grant(actor=current_actor(), location_id=location_id, user_id=user_id)
        return {"user_id": user_id, "location_id": location_id, "location_ids": members.location_ids_of(user_id)}

    @require("users.manage")
    @blp.response(204)
    def delete(self, location_id: int, user_id: int) -> None:
        """Withdraw the membership; the user no longer acts at or reads the location."""
        members.revoke(actor=current_actor(), location_id=location_id, user_id=user_id)
