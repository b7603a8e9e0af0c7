"""GET /v1/models and /v1/models/{id}: the registry, filtered to what the key may call."""
from flask import Blueprint, g

from deltallm.api.common import gateway, json_response
from deltallm.errors import ModelNotFound

bp = Blueprint("models", __name__)


def model_object(name, created):
    return {"id": name, "object": "model", "created": created, "owned_by": "deltallm"}


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    registry = gateway().registry
    data = [model_object(name, registry.created) for name in registry.names()
            if g.principal.may_use_model(name)]
    return json_response({"object": "list", "data": data})


@bp.get("/v1/models/<path:model>")
@bp.get("/models/<path:model>")
def retrieve_model(model):
    registry = gateway().registry
    if model not in registry.groups or not g.principal.may_use_model(model):
        raise ModelNotFound(f"The model `{model}` does not exist or you do not have access to it.",
                            param="model")
    return json_response(model_object(model, registry.created))
