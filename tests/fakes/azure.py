"""Fake Azure OpenAI data plane, written from the public reference (learn.microsoft.com, "Azure OpenAI REST").

Routes live under /openai/deployments/{deployment}/ and need `?api-version=` (else 404 Resource not
found) and `api-key: upstream-secret` (else Azure's 401). Bodies are OpenAI's (tests.fakes.openai
builds them) plus Azure's content-filter annotations: `prompt_filter_results` on responses, and a
first stream chunk that holds only those (empty choices, id and object). The reported model is the
deployment name. Directives: see common.py; a forced 400 is Azure's `content_filter` rejection.
An api-version older than 2024-09-01(-preview) refuses `stream_options`, as Azure did.
"""
from urllib.parse import parse_qs
import itertools

import orjson

from tests.fakes import common as directives
from tests.fakes import openai
from tests.fakes.common import json_reply

SAFE = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": SAFE}]


def error(status, code, message, headers=None, extra=None):
    return json_reply(status, {"error": dict({"code": code, "message": message}, **(extra or {}))}, headers)


def check(req):
    if "api-version=" not in req.query:
        return error(404, "404", "Resource not found")
    if req.headers.get("api-key") != "upstream-secret":
        return error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                                 "Make sure to provide a valid key for an active subscription and use a "
                                 "correct regional API endpoint for your resource.")
    return None


def forced(status):
    if status == 400:
        return error(400, "content_filter", "The response was filtered due to the prompt triggering Azure "
                     "OpenAI's content management policy. Please modify your prompt and retry.",
                     extra={"param": "prompt", "type": None, "status": 400, "innererror": {
                         "code": "ResponsibleAIPolicyViolation",
                         "content_filter_result": dict(SAFE, violence={"filtered": True,
                                                                       "severity": "high"})}})
    if status == 429:
        return error(429, "429", "Requests to the ChatCompletions_Create Operation have exceeded the token "
                     "rate limit of your current pricing tier. Please retry after 1 second.",
                     headers=[("Retry-After", "1")])
    return error(status, str(status), f"forced status {status}")


def chat(req):
    denied = check(req)
    if denied:
        return denied
    body = dict(req.json(), model=req.match["dep"])
    if "stream_options" in body and parse_qs(req.query)["api-version"][0] < "2024-09-01":
        return error(400, None, "Unrecognized request argument supplied: stream_options",
                     extra={"type": "invalid_request_error", "param": None})
    prompt = openai.last_user_text(body.get("messages"))
    status = directives.apply(prompt)
    if status:
        return forced(status)
    text = directives.reply_text(prompt)
    if body.get("stream"):
        status, headers, chunks = openai.stream(body, text, "stream-break" in directives.parse(prompt))
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": PROMPT_FILTER}
        return status, headers, itertools.chain([b"data: " + orjson.dumps(first) + b"\n\n"], chunks)
    reply = openai.completion(body, text)
    reply["prompt_filter_results"] = PROMPT_FILTER
    for choice in reply["choices"]:
        choice["content_filter_results"] = SAFE
    return json_reply(200, reply)


def like_openai(handler):
    """Azure's embeddings, images and audio bodies are OpenAI's: check Azure's auth, then answer as the
    OpenAI fake does (the body's model is already the deployment name)."""
    def azure_handler(req):
        denied = check(req)
        if denied:
            return denied
        req.headers["authorization"] = "Bearer upstream-secret"
        return handler(req)
    return azure_handler


ROUTES = [
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/chat/completions", chat),
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/embeddings", like_openai(openai.embeddings)),
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/images/generations", like_openai(openai.images)),
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/audio/speech", like_openai(openai.speech)),
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/audio/transcriptions", like_openai(openai.transcriptions)),
    ("POST", r"/openai/deployments/(?P<dep>[^/]+)/audio/translations", like_openai(openai.translations)),
]
