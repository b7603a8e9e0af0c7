"""OpenAI's shapes for batches: the `batch` object and the output and error file lines (SPEC §5)."""
import hashlib
import secrets

TIMES = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
         "expired_at", "cancelling_at", "cancelled_at")
NEVER_RUN = {
    "batch_cancelled": "This request was not run: the batch was cancelled.",
    "batch_expired": "This request was not run: the batch expired before it could be run.",
}


def batch_object(batch):
    """The batch as OpenAI's OpenAPI schema has it: fields not set yet (a time still to come, a file not
    written) are left out, since the schema does not allow them null; the SDK reads them as None."""
    obj = {"id": batch.id, "object": "batch", "endpoint": batch.endpoint, "input_file_id": batch.input_file_id,
           "completion_window": batch.completion_window, "status": batch.status}
    if batch.errors:
        obj["errors"] = {"object": "list", "data": batch.errors}
    for name in ("output_file_id", "error_file_id") + TIMES:
        if getattr(batch, name) is not None:
            obj[name] = getattr(batch, name)
    obj["request_counts"] = {"total": batch.total, "completed": batch.completed, "failed": batch.failed}
    obj["metadata"] = batch.metadata
    return obj


def new_request_id():
    return f"batch_req_{secrets.token_hex(16)}"


def answered(custom_id, request_id, status, body):
    """A line the upstream answered: output file when status is 200, error file otherwise."""
    return {"id": new_request_id(), "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}


def never_run(batch_id, line, custom_id, code):
    """The error file line of a request never sent (batch cancelled or expired); its id is derived
    from the batch and line, so writing it twice gives the same line."""
    digest = hashlib.blake2b(f"{batch_id}:{line}".encode(), digest_size=16).hexdigest()
    return {"id": f"batch_req_{digest}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": NEVER_RUN[code]}}


def line_error(line, code, message, param=None):
    """One entry of a failed batch's `errors.data`."""
    return {"code": code, "message": message, "param": param, "line": line}
