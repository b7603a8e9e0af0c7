"""GET /openapi.json (no key): the API's OpenAPI 3.1 document, built on first request and kept."""
from flask import Blueprint, current_app

from deltallm.api.common import json_response

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def document():
    doc = current_app.extensions.get("deltallm.openapi")
    if doc is None:
        from deltallm.schemas.openapi import build  # noqa: PLC0415 - apispec is loaded only when asked for
        doc = current_app.extensions["deltallm.openapi"] = build(current_app)
    return json_response(doc)
