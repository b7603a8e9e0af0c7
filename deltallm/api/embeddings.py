"""POST /v1/embeddings and /v1/images/generations: JSON in, JSON out, through the router."""
from flask import Blueprint

from deltallm.api import cached
from deltallm.api.common import gateway, json_response, model_request
from deltallm.operations import embeddings
from deltallm.schemas.embeddings import embedding_request, image_request

bp = Blueprint("embeddings", __name__)


def proxied(schema, operation):
    body, call = model_request(schema)
    return json_response(gateway().router.run(call, body["model"], lambda d: operation(d.adapter, call, body)))


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings():
    body, call = model_request(embedding_request)
    gw = gateway()
    if gw.cache is not None:
        return cached.json_answer(body, call, lambda: embeddings(gw, call, body))
    return json_response(embeddings(gw, call, body))


@bp.post("/v1/images/generations")
@bp.post("/images/generations")
def generate_images():
    def generate(adapter, call, body):
        call.units["images"] = body.get("n") or 1  # billed per image
        return adapter.image_generation(call, body)
    return proxied(image_request, generate)
