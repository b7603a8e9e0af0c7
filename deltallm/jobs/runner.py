"""Where batch jobs run: an RQ queue served by `deltallm worker` when Redis is configured, else
background threads (greenlets under gevent) in the web process; the job code is the same.

Both keep a sweep going that hands batches whose lease ran out (a killed worker, an enqueue lost while
Redis was away, a web process restarted mid-batch) to a new job.
"""
import logging
import secrets
import threading

from deltallm.db import connection
from deltallm.jobs import batch_job, lease
from deltallm.models import Batch, File

logger = logging.getLogger(__name__)
QUEUE = "deltallm-batches"
JOB = "deltallm.jobs.runner.rq_job"
_worker_gateway = []  # the gateway of this `deltallm worker` process (set by the CLI)


def new_job_id(batch_id):
    return f"{batch_id}-{secrets.token_hex(4)}"


def description(batch, size):
    return f"batch {batch.id}: {batch.endpoint}, input {batch.input_file_id} ({size} bytes)"


class Runner:
    """What both runners share: submit a new batch, and the sweep."""

    def __init__(self, gw):
        self.gw = gw
        self.seconds = gw.settings.general["batch_lease_seconds"]
        self.closing = threading.Event()
        self.sweeper = None

    def submit(self, batch, size=0):
        job_id = new_job_id(batch.id)
        lease.claim_new(batch.id, job_id, self.seconds)
        try:
            self.start_job(batch, job_id, size)
        except Exception as exc:  # noqa: BLE001 - the sweep enqueues it once the lease runs out
            logger.warning("batch %s: could not start its job (%s); it starts when the queue is back",
                           batch.id, exc.__class__.__name__)

    def sweep(self):
        """Give every batch that lost its job a new one; returns how many."""
        started = 0
        for batch in lease.stale():
            if self.waiting(batch.job_id):
                lease.claim_new(batch.id, batch.job_id, self.seconds)  # queued behind others: keep its place
                continue
            job_id = new_job_id(batch.id)
            if lease.claim_stale(batch, job_id, self.seconds):
                logger.info("batch %s: its job stopped; starting job %s", batch.id, job_id)
                with connection():
                    full = Batch.get_by_id(batch.id)
                    file = File.get_or_none(File.id == full.input_file_id)
                self.start_job(full, job_id, file.bytes if file is not None else 0)
                started += 1
        return started

    def start_sweeping(self):
        if self.sweeper is None:
            self.sweeper = threading.Thread(target=self._sweep_loop, name="batch-sweep", daemon=True)
            self.sweeper.start()
        return self

    def _sweep_loop(self):
        while not self.closing.wait(self.seconds / 2):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - the database or Redis away: try again later
                logger.warning("batch sweep failed (%s: %s)", exc.__class__.__name__, str(exc)[:200])

    def waiting(self, job_id):
        return False

    def close(self):
        self.closing.set()


class LocalRunner(Runner):
    """Jobs as threads of this process (the embedded default: `deltallm serve` alone, no Redis)."""

    def __init__(self, gw):
        super().__init__(gw)
        self.jobs = []

    def start_job(self, batch, job_id, size):
        thread = threading.Thread(target=self.run, args=(batch.id, job_id), name=f"batch-{batch.id}",
                                  daemon=True)
        self.jobs = [t for t in self.jobs if t.is_alive()] + [thread]
        thread.start()

    def run(self, batch_id, job_id):
        try:
            batch_job.run(self.gw, batch_id, job_id, abort=self.closing)
        except Exception:  # noqa: BLE001 - logged; the sweep starts it again
            logger.exception("batch %s: job %s failed", batch_id, job_id)

    def close(self, timeout=5.0):
        super().close()
        for thread in self.jobs:
            thread.join(timeout)


class RqRunner(Runner):
    """Jobs on the RQ queue, run by `deltallm worker` processes."""

    def __init__(self, gw, connection, queue=None):
        super().__init__(gw)
        from rq import Queue
        self.queue = Queue(queue or QUEUE, connection=connection)

    def start_job(self, batch, job_id, size):
        # no RQ timeout: a batch may run for its whole 24 h window; the lease notices a dead job
        self.queue.enqueue(JOB, batch.id, job_id=job_id, job_timeout=-1, result_ttl=86400,
                           failure_ttl=7 * 86400, description=description(batch, size),
                           meta={"batch_id": batch.id, "completed": 0, "failed": 0, "total": None})

    def waiting(self, job_id):
        from rq.job import Job, JobStatus
        from rq.exceptions import NoSuchJobError
        if not job_id:
            return False
        try:
            status = Job.fetch(job_id, connection=self.queue.connection).get_status()
        except NoSuchJobError:
            return False
        return status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def runner_for(gw):
    """The gateway's runner, built on first use (a web process without Redis also starts its sweep)."""
    if gw.batch_runner is None:
        gw.batch_runner = RqRunner(gw, gw.redis) if gw.redis is not None else LocalRunner(gw).start_sweeping()
    return gw.batch_runner


def use_worker_gateway(gw):
    _worker_gateway[:] = [gw]


def rq_job(batch_id):
    """What RQ runs in `deltallm worker`: the batch job, reporting progress in job.meta."""
    from rq import get_current_job
    job = get_current_job()

    def progress(completed, failed, total):
        job.meta.update(completed=completed, failed=failed, total=total)
        try:
            job.save_meta()
        except Exception as exc:  # noqa: BLE001 - Redis away: progress shows again when it is back
            logger.warning("batch %s: progress not saved (%s)", batch_id, exc.__class__.__name__)
    batch_job.run(_worker_gateway[0], batch_id, job.id, progress)
