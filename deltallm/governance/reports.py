"""Spend and usage reports from the usage log (SPEC §7 /admin/spend, /admin/usage), Flask-free."""
import datetime

from peewee import SQL, PostgresqlDatabase, fn

from deltallm.db import connection, database
from deltallm.errors import InvalidRequest
from deltallm.models import Usage

GROUPS = ("day", "key", "model")
MAX_LIMIT = 1000


def parse_time(value, name):
    """ISO 8601 (a `Z` or an offset allowed) or unix seconds, as naive UTC; None passes through."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) or str(value).replace(".", "", 1).isdigit():
            return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc).replace(tzinfo=None)
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest(f"'{name}' must be an ISO 8601 time or unix seconds", param=name) from None
    if parsed.tzinfo:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def iso(value):
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def _filters(key_id=None, model=None, start=None, end=None):
    where = []
    if key_id:
        where.append(Usage.key_id == key_id)
    if model:
        where.append(Usage.model == model)
    if start is not None:
        where.append(Usage.created_at >= start)
    if end is not None:
        where.append(Usage.created_at < end)      # end is exclusive
    return where


def _totals(spend, requests, prompt, completion, total):
    return {"spend": round(float(spend or 0.0), 10), "requests": int(requests or 0),
            "prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0),
            "total_tokens": int(total or 0)}


def _sums():
    return [fn.SUM(Usage.spend), fn.COUNT(Usage.id), fn.SUM(Usage.prompt_tokens),
            fn.SUM(Usage.completion_tokens), fn.SUM(Usage.total_tokens)]


def _day():
    if isinstance(database.obj, PostgresqlDatabase):
        return fn.to_char(Usage.created_at, "YYYY-MM-DD").coerce(False)
    return fn.strftime("%Y-%m-%d", Usage.created_at).coerce(False)


def spend_report(key_id=None, model=None, start=None, end=None, group_by=None):
    """`/admin/spend`: totals over the filtered usage log, and per group when `group_by` is given."""
    if group_by not in (None, "", *GROUPS):
        raise InvalidRequest("'group_by' must be one of day, key, model", param="group_by")
    start, end = parse_time(start, "start"), parse_time(end, "end")
    where = _filters(key_id, model, start, end)
    with connection():
        query = Usage.select(*_sums())
        if where:
            query = query.where(*where)
        total = _totals(*query.tuples().get())
        data = []
        if group_by:
            column = {"day": _day(), "key": Usage.key_id, "model": Usage.model}[group_by]
            grouped = Usage.select(column.alias("grp"), *_sums())
            if where:
                grouped = grouped.where(*where)
            order = SQL("grp") if group_by == "day" else fn.SUM(Usage.spend).desc()
            for row in grouped.group_by(SQL("grp")).order_by(order).tuples():
                data.append({"group": row[0], **_totals(*row[1:])})
    return {"object": "spend", "start": iso(start), "end": iso(end), "total": total, "data": data}


def public(row):
    return {"id": row.id, "request_id": row.request_id, "created_at": iso(row.created_at),
            "key_id": row.key_id, "model": row.model, "deployment": row.deployment,
            "endpoint": row.endpoint, "status": row.status, "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens, "total_tokens": row.total_tokens,
            "spend": row.spend, "latency_ms": row.latency_ms, "stream": bool(row.stream),
            "cache_hit": row.cache_hit}


def _integer(value, name, default):
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number < 2 ** 63:      # ids are BIGINT
        raise InvalidRequest(f"'{name}' must be a non-negative integer", param=name)
    return number


def usage_list(key_id=None, model=None, limit=100, after=None):
    """`/admin/usage`: records newest first; `after` is the last id of the previous page."""
    limit = _integer(limit, "limit", 100)
    after = _integer(after, "after", None)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}", param="limit")
    where = _filters(key_id, model)
    if after is not None:
        where.append(Usage.id < after)
    with connection():
        query = Usage.select().order_by(Usage.id.desc()).limit(limit + 1)
        rows = list(query.where(*where) if where else query)
    return {"object": "list", "data": [public(row) for row in rows[:limit]], "has_more": len(rows) > limit}


def spend_since(key_id, start):
    """USD a key spent since `start` (the budget period's beginning): seeds the limiter's counter."""
    with connection():
        value = Usage.select(fn.SUM(Usage.spend)).where(
            (Usage.key_id == key_id) & (Usage.created_at >= start)).scalar()
    return float(value or 0.0)
