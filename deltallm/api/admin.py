"""The admin API (master key only): virtual keys, and the spend and usage reports."""
from flask import Blueprint, request

from deltallm.api.common import gateway, json_body, json_response, query_args
from deltallm.db import connection
from deltallm.errors import InvalidRequest, NotFound
from deltallm.governance import reports
from deltallm.governance.durations import add_duration
from deltallm.governance.key_spend import current_period, key_spend, key_spends
from deltallm.keys import create_key, public, regenerate_key
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


def view(row, plaintext=None):
    spend, reset_at = key_spend(row)
    return public(row, plaintext, spend, reset_at)


def check_models(fields):
    """Allowlists and per-model limits may only name models the gateway serves (config or runtime
    groups, aliases): a typo would otherwise deny or leave unlimited what was meant."""
    if not any(fields.get(name) for name in ("models", "model_rpm_limit", "model_tpm_limit")):
        return
    registry = gateway().registry
    registry.refresh(force=True)     # a deployment just added through /admin/models counts
    for i, name in enumerate(fields.get("models") or ()):
        if not registry.has(name):
            raise InvalidRequest(f"Invalid value for 'models[{i}]': unknown model '{name}'", param=f"models[{i}]")
    for field in ("model_rpm_limit", "model_tpm_limit"):
        for name in fields.get(field) or {}:
            if not registry.has(name):
                raise InvalidRequest(f"Invalid value for '{field}': unknown model '{name}'",
                                     param=f"{field}.{name}")


def check_mcp_servers(fields):
    """`mcp_servers` entries (`server` or `server.tool`) must name a server the gateway knows."""
    registry = gateway().mcp
    for i, entry in enumerate(fields.get("mcp_servers") or ()):
        if not registry.has(entry.partition(".")[0]):
            registry.refresh(force=True)  # a server just added through /admin/mcp/servers counts
        if not registry.has(entry.partition(".")[0]):
            raise InvalidRequest(f"Invalid value for 'mcp_servers[{i}]': unknown MCP server "
                                 f"'{entry.partition('.')[0]}'", param=f"mcp_servers[{i}]")


def prepare(fields, now):
    check_models(fields)
    check_mcp_servers(fields)
    duration = fields.pop("duration", None)
    if duration is not None:
        fields["expires_at"] = add_duration(now, duration)
    return fields


@bp.post("/keys")
def create():
    fields = prepare(json_body(key_create), utcnow())
    row, plaintext = create_key(**fields)
    # a new key has spent nothing yet; its first budget period has just begun
    return json_response(public(row, plaintext, 0.0, current_period(row, row.created_at)[1]), 201)


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
    more = len(rows) > limit
    rows = rows[:limit]
    spends = key_spends(rows)
    data = [public(r, None, *spends[r.id]) for r in rows]
    return json_response({"object": "list", "data": data, "has_more": more,
                          "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})


@bp.get("/keys/<key_id>")
def read(key_id):
    with connection():
        return json_response(view(live_key(key_id)))


@bp.patch("/keys/<key_id>")
def update(key_id):
    now = utcnow()
    fields = prepare(json_body(key_update), now)
    with connection():
        row = live_key(key_id)
        if "budget_duration" in fields and fields["budget_duration"] != row.budget_duration:
            fields["budget_period_start"] = now     # a new duration starts a new period
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = now
        row.save()
    return json_response(view(row))


@bp.post("/keys/<key_id>/regenerate")
def regenerate(key_id):
    with connection():
        row = live_key(key_id)
    return json_response(view(row, regenerate_key(row)))


@bp.get("/spend")
def spend():
    args = query_args("key_id", "model", "start", "end", "group_by")
    return json_response(reports.spend_report(**args))


@bp.get("/usage")
def usage():
    args = query_args("key_id", "model", "limit", "after")
    return json_response(reports.usage_list(**args))


@bp.delete("/keys/<key_id>")
def revoke(key_id):
    with connection():
        row = live_key(key_id)
        row.revoked_at = row.updated_at = utcnow()
        row.save()
    return json_response({"id": key_id, "object": "api_key", "deleted": True})
