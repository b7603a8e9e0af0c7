"""The non-streamed request kinds a batch line may be (and the API serves): schema and router call each."""
from typing import Callable, NamedTuple

from deltallm.errors import InvalidRequest
from deltallm.schemas.chat import chat_request
from deltallm.schemas.completions import completion_request
from deltallm.schemas.embeddings import embedding_request
from deltallm.schemas.rerank import too_many
from deltallm.schemas.responses import responses_request
from deltallm.translate import completions
from deltallm.translate.responses import as_applied, from_completion, to_chat


class Operation(NamedTuple):
    schema: object
    run: Callable  # (gateway, call, validated body) -> the OpenAI response dict


def chat(gw, call, body):
    return gw.router.run(call, body["model"], lambda d: d.adapter.chat(call, body))


def embeddings(gw, call, body):
    return gw.router.run(call, body["model"], lambda d: d.adapter.embeddings(call, body))


def rerank(gw, call, body):
    too_many(body, gw.max_rerank_documents)
    return gw.router.run(call, body["model"], lambda d: d.adapter.rerank(call, body))


def legacy_completion(gw, call, body):
    """One upstream chat call per prompt, joined into one legacy completion."""
    bodies = [completions.to_chat(body, prompt) for prompt in completions.prompts(body, gw.max_prompts)]
    results = gw.router.run_each(call, body["model"], bodies, lambda d, c, b: d.adapter.chat(c, b))
    return completions.from_chat(results, body.get("n") or 1)


def response(gw, call, req, body=None):
    """A Responses request through chat; `body` is its chat form when the caller made it already."""
    body = to_chat(req) if body is None else body
    completion = gw.router.run(call, req["model"], lambda d: d.adapter.chat(call, body))
    return from_completion(completion, as_applied(req, call.deployment.adapter))


def request_fallbacks(body):
    if "fallbacks" not in body:
        return None
    chain = body.pop("fallbacks")
    if chain is None:
        return None
    if not isinstance(chain, list) or not all(isinstance(name, str) and name for name in chain):
        raise InvalidRequest("Invalid value for 'fallbacks': must be an array of model names", param="fallbacks")
    return chain


OPERATIONS = {
    "/v1/chat/completions": Operation(chat_request, chat),
    "/v1/embeddings": Operation(embedding_request, embeddings),
    "/v1/completions": Operation(completion_request, legacy_completion),
    "/v1/responses": Operation(responses_request, response),
}
