"""The runtime model registry (master key only): list deployments with their health, add, delete."""
import datetime

from flask import Blueprint

from deltallm import config, model_store
from deltallm.api.common import gateway, json_body, json_response
from deltallm.errors import ConfigError, GatewayError, InvalidRequest, NotFound
from deltallm.router.deployment import shown_params

bp = Blueprint("admin_models", __name__, url_prefix="/admin")


def iso_epoch(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(
        microsecond=0, tzinfo=None).isoformat() + "Z"


def view(deployment, stats, now):
    cooling = stats.cooling_until > now
    return {"id": deployment.id, "object": "model_deployment", "model_name": deployment.model_name,
            "model": deployment.params["model"], "api_base": deployment.params.get("api_base"),
            "source": deployment.source,
            "deltallm_params": shown_params(deployment.params),
            "model_info": deployment.model_info,
            "health": {"state": "cooling" if cooling else "healthy",
                       "cooling_until": iso_epoch(stats.cooling_until) if cooling else None,
                       "recent_failures": stats.failures,
                       "latency_ms": None if stats.latency is None else round(stats.latency * 1000, 2)}}


def views(deployments):
    state = gateway().router.state
    stats = state.stats([d.id for d in deployments])
    now = gateway().router.clock()
    return [view(d, stats[d.id], now) for d in deployments]


@bp.get("/models")
def list_deployments():
    registry = gateway().registry
    registry.refresh(force=True)
    return json_response({"object": "list", "data": views(registry.deployments())})


@bp.post("/models")
def add_deployment():
    gw = gateway()
    raw = json_body()
    if not isinstance(raw, dict):
        raise InvalidRequest("The body must be one model_list entry (a JSON object).")
    try:
        entry, ignored = config.model_entry(config.substitute_env(raw, "body", gw.settings.environment_variables),
                                            "body")
    except ConfigError as exc:
        path = str(exc).partition(": ")[0]
        raise InvalidRequest(f"Invalid model entry: {exc}", param=path.removeprefix("body.") or None) from None
    wanted = entry["model_info"].get("id")
    if wanted and (gw.registry.get(wanted) or model_store.exists(wanted)):
        raise GatewayError(f"A deployment with id '{wanted}' already exists.", status=409,
                           type="invalid_request_error", code="conflict", param="model_info.id")
    row = model_store.store(gw.secrets, entry["model_name"], entry["params"], entry["model_info"], wanted)
    gw.registry.refresh(force=True)
    created = views([gw.registry.get(row.id)])[0]
    created["warnings"] = [f"{path.removeprefix('body.')}: {why}" for path, why in ignored]
    return json_response(created, 201)


@bp.delete("/models/<deployment_id>")
def delete_deployment(deployment_id):
    gw = gateway()
    found = gw.registry.get(deployment_id)
    if found is not None and found.source == "config":
        raise GatewayError(f"Deployment '{deployment_id}' comes from the config file; change the config to "
                           "remove it.", status=409, type="invalid_request_error", code="conflict")
    if not model_store.delete(deployment_id):
        raise NotFound(f"No deployment with id '{deployment_id}'.", param="id")
    gw.registry.refresh(force=True)
    return json_response({"id": deployment_id, "object": "model_deployment", "deleted": True})
