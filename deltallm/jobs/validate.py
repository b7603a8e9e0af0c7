"""Check a batch's input file line by line (streamed, bounded memory) and store its lines as items.

Every invalid line is reported (up to MAX_ERRORS) and then the batch fails with nothing run; a valid
file becomes one BatchItem per line, holding the validated request body.
"""
import hashlib

import orjson

from deltallm.db import connection, database
from deltallm.errors import GatewayError
from deltallm.jobs import files
from deltallm.jobs.shapes import line_error
from deltallm.models import BatchItem
from deltallm.operations import OPERATIONS, request_fallbacks
from deltallm.schemas.common import load

MAX_REQUESTS = 50_000   # OpenAI's limit of requests in one batch
MAX_ERRORS = 1_000      # errors.data stays readable; the last entry says how many more there were
INSERT_ROWS = 500


class Invalid(Exception):
    def __init__(self, code, message, param=None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def check_line(raw, endpoint, gw, principal):
    """(custom_id, validated body) for one input line, or Invalid."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("invalid_json_line", "This line is not valid UTF-8.") from None
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Invalid("invalid_json_line", "This line is not parseable as valid JSON.") from None
    if not isinstance(request, dict):
        raise Invalid("invalid_json_line", "This line is not a JSON object.")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise Invalid("missing_required_parameter", "Each request needs a non-empty string custom_id.",
                      "custom_id")
    if request.get("method") != "POST":
        raise Invalid("invalid_method", "The method of a batch request must be POST.", "method")
    if request.get("url") != endpoint:
        raise Invalid("invalid_url", f"The url of this request does not match the batch's endpoint "
                                     f"{endpoint}.", "url")
    unknown = sorted(set(request) - {"custom_id", "method", "url", "body"})
    if unknown:
        raise Invalid("invalid_request", f"Unknown field '{unknown[0]}' in this request.", unknown[0])
    body = request.get("body")
    try:
        body = load(OPERATIONS[endpoint].schema, body)
    except GatewayError as exc:
        param = f"body.{exc.param}" if exc.param else "body"
        raise Invalid(exc.code or "invalid_request", exc.message, param) from None
    check_body(body, gw, principal)
    return custom_id, body


def check_body(body, gw, principal):
    if body.get("stream"):
        raise Invalid("invalid_request", "Streaming is not supported in batches.", "body.stream")
    for i, tool in enumerate(body.get("tools") or ()):
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            raise Invalid("invalid_request", "MCP tools are not supported in batches.", f"body.tools[{i}].type")
    try:
        request_fallbacks(dict(body))
        model = body["model"]
        allowed = principal.may_use_model(model)
    except GatewayError as exc:
        raise Invalid(exc.code or "invalid_request", exc.message, f"body.{exc.param}" if exc.param else None) from None
    if not allowed:
        raise Invalid("model_not_allowed", f"This key is not allowed to use model `{model}`.", "body.model")
    if not gw.registry.has(model):
        raise Invalid("model_not_found", f"The model `{model}` does not exist.", "body.model")


def validate(gw, principal, batch, file, beat=None):
    """Store the batch's items and return [] when every line is valid; else the errors (items removed).
    `beat()` is called every thousand lines: the job's heartbeat, which stops it if its lease was lost."""
    storage = gw.storage
    max_line = gw.max_body_bytes
    errors, extra = [], 0
    seen, rows, count = set(), [], 0

    def fail(line, code, message, param=None):
        nonlocal extra
        if len(errors) < MAX_ERRORS:
            errors.append(line_error(line, code, message, param))
        else:
            extra += 1

    clear(batch.id)
    for number, raw in files.iter_lines(storage, file, max_line):
        if beat is not None and number % 1000 == 0:
            beat()
        if raw is None:
            fail(number, "line_too_long", f"This line is longer than {max_line} bytes.")
            continue
        if not raw.strip():
            continue  # a blank line is no request (a trailing one is common)
        count += 1
        if count > MAX_REQUESTS:
            fail(number, "too_many_requests", f"A batch holds at most {MAX_REQUESTS} requests.")
            continue
        try:
            custom_id, body = check_line(raw, batch.endpoint, gw, principal)
        except Invalid as exc:
            fail(number, exc.code, exc.message, exc.param)
            continue
        # a digest, not the id itself: 50,000 long custom_ids must not sit in memory
        digest = hashlib.blake2b(custom_id.encode(), digest_size=12).digest()
        if digest in seen:
            fail(number, "duplicate_custom_id", "The custom_id of this request is a duplicate of another "
                 "request's; custom_id must be unique in a batch.", "custom_id")
            continue
        seen.add(digest)
        if errors:
            continue  # the batch fails: nothing more to store
        rows.append({"batch_id": batch.id, "line": number, "custom_id": custom_id,
                     "body": orjson.dumps(body).decode()})
        if len(rows) >= INSERT_ROWS:
            insert(rows)
    if not count and not errors:
        fail(None, "empty_file", "The input file has no requests.")
    if extra:
        errors.append(line_error(None, "too_many_errors", f"{extra} more lines are invalid."))
    if errors:
        clear(batch.id)
        return errors
    insert(rows)
    return []


def insert(rows):
    if rows:
        with connection(), database.atomic():
            BatchItem.insert_many(rows).execute()
        rows.clear()


def clear(batch_id):
    with connection():
        BatchItem.delete().where(BatchItem.batch_id == batch_id).execute()
