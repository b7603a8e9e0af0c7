"""POST /v1/rerank (Cohere/Jina shape; also /v2/rerank for Cohere's v2 SDK): JSON in, JSON out, through the router."""
from flask import Blueprint

from deltallm import operations
from deltallm.api.common import gateway, json_response, model_request
from deltallm.schemas.rerank import rerank_request

bp = Blueprint("rerank", __name__)


@bp.post("/v1/rerank")
@bp.post("/v2/rerank")
@bp.post("/rerank")
def rerank():
    body, call = model_request(rerank_request)
    return json_response(operations.rerank(gateway(), call, body))
