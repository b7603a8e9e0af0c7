"""The Batch API (OpenAI's): create, list, retrieve and cancel batches; the work runs in jobs/.

Only the key that created a batch (or the master key) sees it; to any other key it does not exist (404).
"""
import secrets
import time

from flask import Blueprint, g

from deltallm.api.common import gateway, json_body, json_response, query_args
from deltallm.db import connection
from deltallm.errors import GatewayError, InvalidRequest, NotFound
from deltallm.jobs import files, lease
from deltallm.jobs.runner import runner_for
from deltallm.jobs.shapes import batch_object
from deltallm.models import Batch
from deltallm.schemas.batches import batch_create

bp = Blueprint("batches", __name__)
WINDOW_SECONDS = 86400


class Conflict(GatewayError):
    status, type, code = 409, "invalid_request_error", "batch_not_cancellable"


def new_batch_id():
    """Ids sort in creation order (microseconds first), so a listing's order is stable within a second."""
    return f"batch_{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


def visible(owner):
    return True if owner is None else Batch.owner == owner


def found(batch_id, param="batch_id"):
    owner = g.principal.key_id
    with connection():
        batch = Batch.get_or_none((Batch.id == batch_id) & visible(owner)) if len(batch_id) <= 64 else None
    if batch is None:
        raise NotFound(f"No such Batch object: {batch_id}", param=param)
    return batch


@bp.post("/v1/batches")
@bp.post("/batches")
def create():
    body = json_body(batch_create)
    owner = g.principal.key_id
    file = files.get_file(body["input_file_id"], owner)
    if file is None:
        raise NotFound(f"No such File object: {body['input_file_id']}", param="input_file_id")
    if file.purpose != "batch":
        raise InvalidRequest("The input file must have been uploaded with purpose 'batch'.", param="input_file_id")
    now = int(lease.now())
    with connection():
        batch = Batch.create(id=new_batch_id(), owner=owner, endpoint=body["endpoint"],
                             input_file_id=file.id, completion_window=body["completion_window"] or "24h",
                             metadata=body["metadata"], created_at=now, expires_at=now + WINDOW_SECONDS)
    created = batch_object(batch)  # as created: under gevent its job may already have moved it on
    runner_for(gateway()).submit(batch, file.bytes)
    return json_response(created)


@bp.get("/v1/batches")
@bp.get("/batches")
def list_batches():
    args = query_args("limit", "after")
    limit = args["limit"] or "20"
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidRequest("limit must be an integer between 1 and 100", param="limit")
    query = Batch.select().where(visible(g.principal.key_id))
    if args["after"] is not None:
        after = found(args["after"], param="after")
        query = query.where((Batch.created_at < after.created_at)
                            | ((Batch.created_at == after.created_at) & (Batch.id < after.id)))
    with connection():
        rows = list(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(int(limit) + 1))
    data = [batch_object(row) for row in rows[:int(limit)]]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > int(limit)})


@bp.get("/v1/batches/<batch_id>")
@bp.get("/batches/<batch_id>")
def retrieve(batch_id):
    return json_response(batch_object(found(batch_id)))


@bp.post("/v1/batches/<batch_id>/cancel")
@bp.post("/batches/<batch_id>/cancel")
def cancel(batch_id):
    batch = found(batch_id)
    with connection():
        changed = Batch.update(status="cancelling", cancelling_at=int(lease.now())).where(
            (Batch.id == batch.id) & Batch.status.in_(("validating", "in_progress"))).execute()
    batch = found(batch_id)
    if not changed and batch.status not in ("cancelling", "cancelled"):
        raise Conflict(f"Cannot cancel a batch with status '{batch.status}'.")
    return json_response(batch_object(batch))
