"""Who works on a batch: one job at a time holds its lease, renewed by heartbeats while it runs.

A batch in an active state whose lease ran out lost its job (a killed worker, a job that never got to
run): `claim_stale` hands it to a new job. Every change of a batch's lease is one conditional UPDATE,
so two processes can never both hold it. The clock is injectable (tests move time forward).
"""
import time

from deltallm.db import connection
from deltallm.models import Batch

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
clock = time.time


def now():
    return clock()


def claim_new(batch_id, job_id, seconds):
    """Give a just-created batch (or one whose job is being enqueued again) to `job_id` for `seconds`."""
    with connection():
        Batch.update(job_id=job_id, lease_until=now() + seconds).where(Batch.id == batch_id).execute()


def acquire(batch_id, job_id, seconds):
    """True when `job_id` now holds the lease: it was given this job, or its lease ran out."""
    t = now()
    with connection():
        return Batch.update(job_id=job_id, lease_until=t + seconds).where(
            (Batch.id == batch_id) & Batch.status.in_(ACTIVE)
            & ((Batch.job_id == job_id) | Batch.lease_until.is_null() | (Batch.lease_until < t))).execute() == 1


def renew(batch_id, job_id, seconds):
    """The heartbeat: False when the lease was lost (another job took over), and the job must stop."""
    with connection():
        return Batch.update(lease_until=now() + seconds).where(
            (Batch.id == batch_id) & (Batch.job_id == job_id)).execute() == 1


def release(batch_id, job_id):
    """A job that stops without finishing its batch lets another one take it at once."""
    with connection():
        Batch.update(lease_until=0).where((Batch.id == batch_id) & (Batch.job_id == job_id)).execute()


def stale(limit=100):
    """Active batches whose lease ran out: their job died or never started."""
    with connection():
        return list(Batch.select(Batch.id, Batch.job_id, Batch.lease_until).where(
            Batch.status.in_(ACTIVE) & (Batch.lease_until.is_null() | (Batch.lease_until < now())))
            .order_by(Batch.created_at).limit(limit))


def claim_stale(batch, job_id, seconds):
    """Take over `batch` (a row from stale()) for a new job, unless someone else did first."""
    t = now()
    with connection():
        return Batch.update(job_id=job_id, lease_until=t + seconds).where(
            (Batch.id == batch.id) & Batch.status.in_(ACTIVE)
            & (Batch.lease_until.is_null() | (Batch.lease_until < t))).execute() == 1
