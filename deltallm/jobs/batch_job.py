"""The batch job: validate the input, run its lines concurrently, write the output and error files.

It takes a batch id and reloads everything, so it is safe to run again at any point: a line's answer
is stored with the same UPDATE that marks it done (only while it is still pending), so a job killed
mid-batch and run again sends only the lines that had no answer yet, and each custom_id ends up exactly
once in the output or the error file. One job holds the batch's lease at a time (jobs/lease.py).
"""
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from deltallm.db import connection
from deltallm.errors import AuthenticationFailed
from deltallm.jobs import files, lease
from deltallm.jobs.execute import run_item
from deltallm.jobs.finalize import finalize, state_counts
from deltallm.jobs.validate import validate
from deltallm.keys import Principal
from deltallm.models import ApiKey, Batch, BatchItem, utcnow

logger = logging.getLogger(__name__)
PAGE = 500


class Lost(Exception):
    """Another job holds the batch now: this one stops and leaves it alone."""


class Aborted(Exception):
    """This process is stopping: the batch goes on in another job."""


def run(gw, batch_id, job_id, progress=None, abort=None):
    """Work on batch `batch_id` as job `job_id` until it is done, the lease is lost, or `abort` is set
    (the process stops: the lease is let go for another job); `progress(completed, failed, total)` is
    called as it runs (RQ's job.meta)."""
    settings = gw.settings.general
    seconds = settings["batch_lease_seconds"]
    if not lease.acquire(batch_id, job_id, seconds):
        logger.info("batch %s: another job holds it (or it is finished); job %s stops", batch_id, job_id)
        return
    work = Work(gw, batch_id, job_id, seconds, settings["batch_concurrency"], progress, abort)
    try:
        work.run()
    except Lost:
        logger.warning("batch %s: lease lost; job %s stops, another job goes on", batch_id, job_id)
    except Aborted:
        lease.release(batch_id, job_id)
    except BaseException:
        lease.release(batch_id, job_id)  # picked up again by the next sweep
        raise


class Work:
    def __init__(self, gw, batch_id, job_id, seconds, concurrency, progress, abort=None):
        self.gw, self.batch_id, self.job_id = gw, batch_id, job_id
        self.seconds, self.concurrency, self.progress = seconds, concurrency, progress
        self.abort = abort or threading.Event()
        self.stop = threading.Event()
        self.beat_at = 0.0
        self.watched = None  # the batch whose cancel and expiry the heartbeat looks out for

    def batch(self):
        with connection():
            return Batch.get_by_id(self.batch_id)

    def heartbeat(self, force=False):
        """Renew the lease every third of its length; raise Lost when another job took it."""
        t = lease.now()
        if not force and t < self.beat_at:
            return
        if not lease.renew(self.batch_id, self.job_id, self.seconds):
            self.stop.set()
            raise Lost()
        self.beat_at = t + self.seconds / 3
        if self.watched is not None:
            self.stopping(self.watched)
        counts = self.count()
        if self.progress is not None:
            self.progress(*counts)

    def count(self):
        by_state = state_counts(self.batch_id)
        total = sum(by_state.values())
        done, failed = by_state.get("done", 0), by_state.get("failed", 0)
        with connection():
            Batch.update(total=total, completed=done, failed=failed).where(
                (Batch.id == self.batch_id) & (Batch.job_id == self.job_id)).execute()
        return done, failed, total

    def run(self):
        batch = self.batch()
        principal = principal_of(batch)
        if batch.status == "validating":
            batch = self.validate(batch, principal)
            if batch is None:
                return
        if batch.status == "in_progress":
            self.execute(batch, principal)
            if self.abort.is_set():
                raise Aborted()
            batch = self.batch()
        if batch.status in ("in_progress", "finalizing", "cancelling"):
            self.heartbeat(force=True)
            finalize(self.gw, self.batch(), self.job_id, self.ending(batch))

    def ending(self, batch):
        if batch.status == "cancelling":
            return "cancelled"
        if lease.now() >= batch.expires_at and self.pending():
            return "expired"
        return "completed"

    def validate(self, batch, principal):
        file = files.get_file(batch.input_file_id, batch.owner)
        if file is None:
            errors = [{"code": "file_not_found", "message": "The input file no longer exists.",
                       "param": "input_file_id", "line": None}]
        else:
            errors = validate(self.gw, principal, batch, file, self.heartbeat)
        self.heartbeat(force=True)
        t = int(lease.now())
        with connection():
            if errors:
                Batch.update(status="failed", failed_at=t, errors=errors, lease_until=None).where(
                    (Batch.id == batch.id) & (Batch.job_id == self.job_id)
                    & (Batch.status == "validating")).execute()
                logger.info("batch %s failed validation: %d errors", batch.id, len(errors))
                return None
            Batch.update(status="in_progress", in_progress_at=t).where(
                (Batch.id == batch.id) & (Batch.job_id == self.job_id) & (Batch.status == "validating")).execute()
        self.count()
        return self.batch()

    def pending(self):
        with connection():
            return BatchItem.select().where((BatchItem.batch_id == self.batch_id)
                                            & (BatchItem.state == "pending")).exists()

    def stopping(self, batch):
        """Cancelled or expired (or the lease lost): no new line starts; lines in flight still finish."""
        if self.abort.is_set():
            self.stop.set()
        if not self.stop.is_set() and (self.batch().status != "in_progress" or lease.now() >= batch.expires_at):
            self.stop.set()
        return self.stop.is_set()

    def execute(self, batch, principal):
        """Run every pending line, `concurrency` at a time, until none is left or the batch stops."""
        self.watched = batch
        in_flight, last = set(), 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"batch-{batch.id}") as pool:
            while not self.stopping(batch):
                page = self.next_page(last)
                if not page:
                    break
                for item in page:
                    while len(in_flight) >= self.concurrency:
                        in_flight = self.collect(in_flight)
                    if self.stop.is_set():
                        break
                    last = item.line
                    in_flight.add(pool.submit(self.one, principal, batch, item))
            while in_flight:
                in_flight = self.collect(in_flight)
        self.count()

    def collect(self, in_flight):
        done, rest = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # a failure to store an answer stops the job: run again, it resumes
        self.heartbeat()
        return rest

    def next_page(self, after_line):
        with connection():
            return list(BatchItem.select(BatchItem.id, BatchItem.line, BatchItem.custom_id, BatchItem.body)
                        .where((BatchItem.batch_id == self.batch_id) & (BatchItem.state == "pending")
                               & (BatchItem.line > after_line))
                        .order_by(BatchItem.line).limit(PAGE))

    def one(self, principal, batch, item):
        outcome = run_item(self.gw, principal, batch, item, self.stop)
        if outcome is None:
            return
        state, line = outcome
        with connection():
            # the checkpoint: the answer and "done" in one statement, only while still pending
            BatchItem.update(state=state, result=line).where(
                (BatchItem.id == item.id) & (BatchItem.state == "pending")).execute()


def principal_of(batch):
    """The batch creator's key as it is now (limits, model access); a revoked or expired key's lines fail."""
    if batch.owner is None:
        return Principal(None)
    with connection():
        row = ApiKey.get_or_none(ApiKey.id == batch.owner)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return Revoked(row)
    return Principal(row)


class Revoked(Principal):
    """A key revoked (or expired) after it created the batch: its lines are refused with 401."""

    __slots__ = ()

    def __init__(self, row):
        super().__init__(row)
        self.is_master, self.policy = False, None

    def may_use_model(self, name):
        raise AuthenticationFailed("The API key that created this batch was revoked or has expired.")
