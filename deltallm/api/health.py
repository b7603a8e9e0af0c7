"""Health routes (no key): liveliness is the process; readiness also checks the database and Redis."""
import logging

from flask import Blueprint

from deltallm.api.common import gateway, json_response
from deltallm.db import connection
from deltallm.errors import GatewayError

logger = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/health/liveliness")
@bp.get("/health/liveness")
def liveliness():
    return json_response({"status": "healthy"})


@bp.get("/health/readiness")
def readiness():
    checks = {}
    try:
        with connection() as db:
            db.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        logger.warning("readiness: database check failed: %s", exc.__class__.__name__)
        checks["database"] = "unreachable"
    redis = gateway().redis
    if redis is not None:
        try:
            redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            logger.warning("readiness: redis check failed: %s", exc.__class__.__name__)
            checks["redis"] = "unreachable"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        raise GatewayError(f"Not ready: {', '.join(failed)} unreachable.", status=503,
                           type="service_unavailable", code="not_ready")
    return json_response({"status": "ready", **checks})
