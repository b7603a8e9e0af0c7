"""A batch's last step: its output and error files from the stored answers, then its final status.

Runs again safely: the files are written first, and the final UPDATE takes effect only for the job that
holds the batch; a job that lost it deletes the files it wrote.
"""
import logging

import orjson
from peewee import fn

from deltallm.db import connection
from deltallm.jobs import files, lease
from deltallm.jobs.shapes import never_run
from deltallm.models import Batch, BatchItem

logger = logging.getLogger(__name__)
PAGE = 500
CHUNK = 1 << 20
NEVER_RUN = {"cancelled": "batch_cancelled", "expired": "batch_expired"}


def state_counts(batch_id):
    """{state: number of items} of a batch."""
    with connection():
        return dict(BatchItem.select(BatchItem.state, fn.COUNT(BatchItem.id)).where(
            BatchItem.batch_id == batch_id).group_by(BatchItem.state).tuples())


def lines(batch, states, code):
    """The file's content, streamed: the stored line of each item in `states` (pending ones as never run
    with `code`), in input order, in chunks of about CHUNK bytes."""
    last, buffer = 0, bytearray()
    while True:
        with connection():
            page = list(BatchItem.select(BatchItem.line, BatchItem.custom_id, BatchItem.state, BatchItem.result)
                        .where((BatchItem.batch_id == batch.id) & BatchItem.state.in_(states)
                               & (BatchItem.line > last))
                        .order_by(BatchItem.line).limit(PAGE))
        if not page:
            break
        for item in page:
            line = item.result if item.state != "pending" else never_run(batch.id, item.line, item.custom_id, code)
            buffer += orjson.dumps(line) + b"\n"
            last = item.line
        if len(buffer) >= CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def write(gw, batch, kind, states, code):
    with connection():
        if not BatchItem.select().where((BatchItem.batch_id == batch.id) & BatchItem.state.in_(states)).exists():
            return None
    return files.save_file(gw.storage, owner=batch.owner, purpose="batch_output",
                           filename=f"{batch.id}_{kind}.jsonl", chunks=lines(batch, states, code))


def finalize(gw, batch, job_id, ending):
    """Write the files and end `batch` as `ending`: completed, cancelled or expired."""
    t = int(lease.now())
    with connection():
        if ending == "completed" and batch.status == "in_progress":
            Batch.update(status="finalizing", finalizing_at=t).where(
                (Batch.id == batch.id) & (Batch.job_id == job_id) & (Batch.status == "in_progress")).execute()
    code = NEVER_RUN.get(ending)
    failed_states = ["failed", "pending"] if code else ["failed"]
    written = [write(gw, batch, "output", ["done"], None), write(gw, batch, "error", failed_states, code)]
    output, error = written
    with connection():
        counts = state_counts(batch.id)
        done = Batch.update(
            status=ending, **{f"{ending}_at": t}, lease_until=None,
            output_file_id=output and output.id, error_file_id=error and error.id,
            total=sum(counts.values()), completed=counts.get("done", 0), failed=counts.get("failed", 0),
        ).where((Batch.id == batch.id) & (Batch.job_id == job_id)
                & Batch.status.in_(("in_progress", "finalizing", "cancelling"))).execute()
    if not done:
        logger.warning("batch %s: finished by another job; dropping this job's files", batch.id)
        for file in written:
            if file is not None:
                files.delete_file(gw.storage, file)
        return False
    logger.info("batch %s %s: %d done, %d failed", batch.id, ending, counts.get("done", 0), counts.get("failed", 0))
    return True
