from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from clinic.auth.policy import current_actor, require
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
        return {"items": service.list_locations()}

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
