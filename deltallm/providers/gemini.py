"""Google Gemini (Generative Language API): OpenAI chat requests to generateContent and back."""
import math
import re
import time
import uuid

import orjson

from deltallm.errors import UpstreamError
from deltallm.providers.base import Provider, iter_sse, map_status, not_a_completion, parse_json, translated
from deltallm.providers.embedding_shapes import embedding_list, texts_of
from deltallm.providers.gemini_request import to_request
from deltallm.providers.gemini_signatures import new_call_id
from deltallm.providers.native_embeddings import gemini_request, gemini_vectors

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(
    ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE", "OTHER"),
    "content_filter")}
# Finishes where the model produced nothing usable (an unparsable or undeclared function call): an
# upstream error the router retries or fails over, never a normal "stop" with empty content.
BROKEN = {"MALFORMED_FUNCTION_CALL": "an invalid function call",
          "UNEXPECTED_TOOL_CALL": "a call to a tool that was not offered",
          "MALFORMED_RESPONSE": "a malformed response"}


# -- response ---------------------------------------------------------------------------------
def from_response(deployment, data):
    """A GenerateContentResponse as an OpenAI chat.completion."""
    choices = []
    for pos, cand in enumerate(data.get("candidates") or []):
        text, calls, thoughts = read_parts(cand)
        message = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
        if thoughts:
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": cand.get("index", pos), "message": message, "logprobs": None,
                        "finish_reason": finish_reason(cand.get("finishReason"), bool(calls))})
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason), or nothing came back
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        choices.append({"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None, "finish_reason": "content_filter" if blocked else "stop"})
    return {"id": "chatcmpl-" + (data.get("responseId") or uuid.uuid4().hex), "object": "chat.completion",
            "created": int(time.time()), "model": data.get("modelVersion") or deployment.model,
            "choices": choices, "usage": usage(data.get("usageMetadata"))}


def read_parts(cand):
    """(answer text, OpenAI tool calls, thought summary text) of one candidate."""
    text, calls, thoughts = [], [], []
    for part in (cand.get("content") or {}).get("parts") or []:
        if "text" in part:
            (thoughts if part.get("thought") else text).append(part["text"])
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append({"id": new_call_id(call, part.get("thoughtSignature")), "type": "function",
                          "function": {"name": call.get("name") or "",
                                       "arguments": orjson.dumps(call.get("args") or {}).decode()}})
    return "".join(text), calls, "".join(thoughts)


def finish_reason(reason, has_calls):
    if reason in BROKEN:
        raise UpstreamError(f"gemini upstream finished with {reason}: the model produced {BROKEN[reason]}")
    mapped = FINISH.get(reason, "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def usage(meta):
    """usageMetadata in OpenAI terms; thinking tokens count as (reasoning) completion tokens."""
    meta = meta or {}
    prompt = meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    completion = meta.get("candidatesTokenCount", 0) + thoughts
    out = {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": meta.get("totalTokenCount") or prompt + completion}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if meta.get("cachedContentTokenCount"):
        out["prompt_tokens_details"] = {"cached_tokens": meta["cachedContentTokenCount"]}
    return out


class StreamTranslator:
    """Turns each streamed GenerateContentResponse into OpenAI chat.completion.chunk dicts."""

    def __init__(self, deployment):
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = deployment.model
        self.started, self.finished, self.calls = set(), set(), {}
        self.usage = None

    def chunk(self, index, delta, finish=None):
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}

    def feed(self, data):
        if isinstance(data.get("error"), dict):  # an error record inside a 200 stream: map its own code
            code = data["error"].get("code")
            raise google_error(code if isinstance(code, int) and code >= 400 else 500, data, {})
        if not self.started and data.get("responseId"):
            self.id = "chatcmpl-" + data["responseId"]
        self.model = data.get("modelVersion") or self.model
        self.usage = data.get("usageMetadata") or self.usage
        candidates = data.get("candidates") or []
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            candidates = [{"index": 0, "finishReason": "SAFETY"}]  # the prompt itself was blocked
        out = []
        for pos, cand in enumerate(candidates):
            index = cand.get("index", pos)
            text, calls, thoughts = read_parts(cand)
            delta = {}
            if index not in self.started:
                self.started.add(index)
                delta = {"role": "assistant", "content": ""}
            if thoughts:
                delta["reasoning_content"] = thoughts
            if text:
                delta["content"] = text
            if calls:
                first = self.calls.get(index, 0)
                self.calls[index] = first + len(calls)
                delta["tool_calls"] = [dict(call, index=first + k) for k, call in enumerate(calls)]
                if not text and "role" in delta:
                    delta["content"] = None
            if delta:
                out.append(self.chunk(index, delta))
            reason = cand.get("finishReason")
            if reason and index not in self.finished:
                self.finished.add(index)
                out.append(self.chunk(index, {}, finish_reason(reason, bool(self.calls.get(index)))))
        return out

    def finish(self):
        """The usage-only chunk, once every candidate has finished (else the stream was cut)."""
        if not self.started or self.started - self.finished:
            raise UpstreamError("gemini upstream stream ended before its finishReason")
        return [dict(self.chunk(0, {}), choices=[], usage=usage(self.usage))]


# -- provider ---------------------------------------------------------------------------------
class GeminiProvider(Provider):
    """Gemini's native generateContent API, authenticated with the deployment's `x-goog-api-key`."""

    name = "gemini"
    # as thinkingConfig (gemini_config); a model or value it cannot apply to is a 400, never ignored
    applies_reasoning_effort = True
    default_api_base = "https://generativelanguage.googleapis.com/v1beta"
    key_header = ("x-goog-api-key", "{key}")  # a header, so the key never lands in URL logs

    def __init__(self, deployment):
        super().__init__(deployment)
        self.use_headers()
        model = deployment.model  # "gemini-2.0-flash", or a full resource such as "tunedModels/x"
        self.resource = model if "/" in model else "models/" + model

    def chat(self, call, body):
        url = f"{self.api_base}/{self.resource}:generateContent"
        resp = self.send(call, url, to_request(self.deployment, body), headers=self.headers)
        data = decode(resp.content)
        if not any(k in data for k in ("candidates", "promptFeedback", "usageMetadata")):
            raise not_a_completion("gemini", "a GenerateContentResponse")
        return translated("gemini", from_response, self.deployment, data)

    def chat_stream(self, call, body):
        url = f"{self.api_base}/{self.resource}:streamGenerateContent?alt=sse"
        payload = to_request(self.deployment, body)
        resp = self.send(call, url, payload, headers=self.stream_headers, stream=True)
        chunks = translate_stream(resp, StreamTranslator(self.deployment))
        first = next(chunks)  # read the first record now: an error in it can still be retried
        return resume(first, chunks)

    def embeddings(self, call, body):
        """batchEmbedContents: one request per text; Gemini reports no token counts (usage is 0)."""
        texts = texts_of(body, self.name)
        payload = gemini_request(self.resource, texts, body, self.deployment.model_info)
        resp = self.send(call, f"{self.api_base}/{self.resource}:batchEmbedContents", payload, headers=self.headers)
        vectors = translated("gemini", gemini_vectors, decode(resp.content), len(texts))
        return embedding_list(vectors, self.deployment.model, 0, body)

    def map_error(self, status, body, headers):
        payload = parse_json(body)
        if isinstance(payload, list) and payload:  # the JSON-array stream framing wraps errors too
            payload = payload[0]
        return google_error(status, payload, headers)


def google_error(status, payload, headers):
    """Google's `{"error": {code, message, status, details}}` by SPEC §3; its status name is the `code`.

    An invalid key comes back as 400 with reason API_KEY_INVALID: our credential, so it counts as
    a 401. A 429's RetryInfo delay becomes Retry-After.
    """
    err = payload.get("error") if isinstance(payload, dict) else None
    err = err if isinstance(err, dict) else {}
    message = str(err.get("message") or f"gemini upstream returned HTTP {status}")
    state = err.get("status")
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    if status == 400 and (state == "UNAUTHENTICATED" or any(
            str(d.get("reason") or "").startswith("API_KEY_") for d in details)):
        status = 401
    retry_after = headers.get("retry-after") or retry_delay(details)
    return map_status("gemini", status, message, etype="invalid_request_error", code=state,
                      retry_after=retry_after)


def retry_delay(details):
    """Seconds from a google.rpc.RetryInfo detail ("37s", "1.5s"), rounded up, or None."""
    for detail in details:
        match = re.fullmatch(r"(\d+(?:\.\d*)?)s", str(detail.get("retryDelay")))
        if match:
            return str(math.ceil(float(match.group(1))))
    return None


def translate_stream(resp, translator):
    for _event, data in iter_sse(resp):
        yield from translated("gemini", translator.feed, decode(data))
    yield from translator.finish()


def resume(first, chunks):
    yield first
    yield from chunks


def decode(content):
    data = parse_json(content)
    if not isinstance(data, dict):
        raise UpstreamError("gemini upstream returned a body that is not a JSON object")
    return data
