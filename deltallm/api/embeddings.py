"""POST /v1/embeddings and /v1/images/generations: JSON in, JSON out, through the router."""
from flask import Blueprint

from deltallm.api.common import check_model_access, gateway, json_body, json_response, new_call
from deltallm.schemas.embeddings import embedding_request, image_request

bp = Blueprint("embeddings", __name__)


def proxied(schema, operation):
    body = json_body(schema)
    check_model_access(body["model"])
    call = new_call()
    return json_response(gateway().router.run(call, body["model"], lambda d: operation(d.adapter, call, body)))


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings():
    return proxied(embedding_request, lambda adapter, call, body: adapter.embeddings(call, body))


@bp.post("/v1/images/generations")
@bp.post("/images/generations")
def generate_images():
    return proxied(image_request, lambda adapter, call, body: adapter.image_generation(call, body))
