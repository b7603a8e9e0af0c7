"""The admin API (master key only): virtual keys."""
from flask import Blueprint, request

from deltallm.api.common import json_body, json_response
from deltallm.db import connection
from deltallm.errors import InvalidRequest, NotFound
from deltallm.keys import create_key, public
from deltallm.models import ApiKey, utcnow
from deltallm.schemas.admin import key_create, key_update

bp = Blueprint("admin", __name__, url_prefix="/admin")
KEY_ID_MAX = ApiKey.id.max_length


def live_key(key_id):
    # An id no key can have (PostgreSQL refuses NUL characters in a query) is simply not found.
    row = None if "\x00" in key_id or len(key_id) > KEY_ID_MAX else \
        ApiKey.get_or_none((ApiKey.id == key_id) & ApiKey.revoked_at.is_null())
    if row is None:
        raise NotFound(f"No key with id '{key_id}'.", param="key_id")
    return row


def page_args():
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise InvalidRequest("limit must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    return limit, request.args.get("after")


@bp.post("/keys")
def create():
    fields = json_body(key_create)
    row, plaintext = create_key(**fields)
    return json_response(public(row, plaintext), 201)


@bp.get("/keys")
def list_keys():
    limit, after = page_args()
    with connection():
        query = ApiKey.select().where(ApiKey.revoked_at.is_null())
        if after:
            anchor = live_key(after)
            query = query.where((ApiKey.created_at < anchor.created_at) |
                                ((ApiKey.created_at == anchor.created_at) & (ApiKey.id < anchor.id)))
        rows = list(query.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit + 1))
    data = [public(r) for r in rows[:limit]]
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit,
                          "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})


@bp.get("/keys/<key_id>")
def read(key_id):
    with connection():
        return json_response(public(live_key(key_id)))


@bp.patch("/keys/<key_id>")
def update(key_id):
    fields = json_body(key_update)
    with connection():
        row = live_key(key_id)
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        row.save()
    return json_response(public(row))


@bp.delete("/keys/<key_id>")
def revoke(key_id):
    with connection():
        row = live_key(key_id)
        row.revoked_at = row.updated_at = utcnow()
        row.save()
    return json_response({"id": key_id, "object": "api_key", "deleted": True})
