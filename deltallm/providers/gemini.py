"""Google Gemini (Generative Language API): OpenAI chat requests to generateContent and back."""
import base64
import binascii
import math
import mimetypes
import re
import time
import uuid

import orjson

from deltallm.errors import InvalidRequest, UpstreamError
from deltallm.providers.base import Provider, iter_sse, map_status, parse_json
from deltallm.providers.gemini_schema import to_schema

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(
    ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"), "content_filter")}
TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
CONFIG = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
          ("n", "candidateCount"), ("seed", "seed"), ("presence_penalty", "presencePenalty"),
          ("frequency_penalty", "frequencyPenalty"))
# -- request ----------------------------------------------------------------------------------
def to_request(deployment, body):
    """An OpenAI chat-completions body as a GenerateContentRequest (unsupported fields dropped)."""
    system, contents = convert_messages(body.get("messages") or [])
    payload = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        payload["tools"] = function_declarations(body["tools"])
        if body.get("tool_choice") is not None:
            payload["toolConfig"] = tool_config(body["tool_choice"])
    config = generation_config(body)
    if config:
        payload["generationConfig"] = config
    if deployment.params.get("safety_settings"):
        payload["safetySettings"] = deployment.params["safety_settings"]
    return payload


def convert_messages(messages):
    """(systemInstruction parts, contents): Gemini wants alternating user/model turns."""
    system, turns, names = [], [], {}
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
            continue
        if role == "user":
            gem_role, parts = "user", user_parts(msg.get("content"), i)
        elif role == "assistant":
            gem_role, parts = "model", assistant_parts(msg, i, names)
        elif role == "tool":
            gem_role, parts = "user", [tool_result(msg, i, names)]
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param=f"messages[{i}].role")
        if not parts:
            continue
        if turns and turns[-1]["role"] == gem_role:
            turns[-1]["parts"].extend(parts)  # consecutive same-role turns (and tool results) merge
        else:
            turns.append({"role": gem_role, "parts": parts})
    if not turns:
        raise InvalidRequest("messages must contain a user or assistant message", param="messages")
    return system, turns


def texts(content, param):
    """The non-empty text pieces of a text-only content (string or list of text/refusal parts)."""
    if content is None or isinstance(content, str):
        return [content] if content else []
    for j, part in enumerate(content):
        if part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(f"content part type {part.get('type')!r} is not allowed here",
                                 param=f"{param}[{j}].type")
    return [part[part["type"]] for part in content if part.get(part["type"])]


def user_parts(content, i):
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for j, part in enumerate(content):
        kind, param = part.get("type"), f"messages[{i}].content[{j}]"
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(media_part(image.get("url") if isinstance(image, dict) else image, param))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append(media_part(f"data:audio/{audio.get('format')};base64,{audio.get('data')}", param))
        elif kind == "file":  # inline data URLs only: uploaded OpenAI file ids mean nothing to Google
            parts.append(media_part((part.get("file") or {}).get("file_data"), param))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Gemini deployments",
                                 param=param + ".type")
    return parts


def media_part(url, param):
    """A data URL becomes inlineData; a remote URL becomes fileData with a MIME type guessed from its path."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest("missing media url", param=param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidRequest("data URLs must be base64 encoded", param=param)
        mime = header.split(";")[0] or "application/octet-stream"
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        mime = mimetypes.guess_type(url.split("?")[0].split("#")[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise InvalidRequest("media urls must be data:, http(s):// or gs:// URLs", param=param)


def assistant_parts(msg, i, names):
    parts = [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
    for k, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        names[call.get("id")] = fn.get("name")
        args = parse_arguments(fn.get("arguments"), f"messages[{i}].tool_calls[{k}].function.arguments")
        part = {"functionCall": {"name": fn.get("name"), "args": args}}
        signature = thought_signature(call.get("id"))
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def parse_arguments(arguments, param):
    args = parse_json(arguments.encode()) if isinstance(arguments, str) and arguments else arguments or {}
    if not isinstance(args, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return args


# Gemini 3 refuses a history functionCall without the thoughtSignature it came with (400 "missing a
# thought_signature"); OpenAI clients echo only the call id, so the signature rides in it (URL-safe).
SIGNATURE_MARK = "__thought__"


def call_id(call, signature):
    base = call.get("id") or "call_" + uuid.uuid4().hex[:24]
    packed = signature.replace("+", "-").replace("/", "_").rstrip("=") if isinstance(signature, str) else ""
    return base + SIGNATURE_MARK + packed if packed else base


def thought_signature(tool_call_id):
    """The thoughtSignature (standard base64) carried by one of our tool-call ids, or None."""
    packed = tool_call_id.partition(SIGNATURE_MARK)[2] if isinstance(tool_call_id, str) else ""
    try:  # a client-made id that merely contains the mark is not ours
        return base64.b64encode(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))).decode() or None
    except (binascii.Error, ValueError):
        return None


def tool_result(msg, i, names):
    """A tool message as a functionResponse named after the assistant call it answers."""
    name = names.get(msg.get("tool_call_id")) or msg.get("name")
    if not name:
        raise InvalidRequest("tool message does not answer an earlier assistant tool call",
                             param=f"messages[{i}].tool_call_id")
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(texts(content, f"messages[{i}].content"))
    response = parse_json(content.encode()) if isinstance(content, str) and content.lstrip()[:1] == "{" else None
    response = response if isinstance(response, dict) else {"content": content}  # Gemini wants an object
    return {"functionResponse": {"name": name, "response": response}}


def generation_config(body):
    config = {dst: body[src] for src, dst in CONFIG if body.get(src) is not None}
    limits = [body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    if limits:
        config["maxOutputTokens"] = limits[0]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type")
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if kind == "json_schema" and schema:
            config["responseSchema"] = to_schema(schema, "response_format.json_schema.schema", ordered=True)
    elif kind not in (None, "text"):
        raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format.type")
    return config


def function_declarations(tools):
    decls = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise InvalidRequest(f"Gemini deployments support only function tools, not {tool.get('type')!r}",
                                 param=f"tools[{i}].type")
        fn = tool.get("function") or {}
        decl = {"name": fn.get("name")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params.get("properties"):  # Gemini refuses an empty OBJECT
            decl["parameters"] = to_schema(params, f"tools[{i}].function.parameters")
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def tool_config(choice):
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise InvalidRequest("tool_choice must be auto, required, none or a named function", param="tool_choice")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


# -- response ---------------------------------------------------------------------------------
def from_response(deployment, data):
    """A GenerateContentResponse as an OpenAI chat.completion."""
    choices = []
    for pos, cand in enumerate(data.get("candidates") or []):
        text, calls = read_parts(cand)
        message = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
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
    """(concatenated answer text, OpenAI tool calls) of one candidate; thought summaries are skipped."""
    text, calls = [], []
    for part in (cand.get("content") or {}).get("parts") or []:
        if "text" in part and not part.get("thought"):
            text.append(part["text"])
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append({"id": call_id(call, part.get("thoughtSignature")), "type": "function",
                          "function": {"name": call.get("name") or "",
                                       "arguments": orjson.dumps(call.get("args") or {}).decode()}})
    return "".join(text), calls


def finish_reason(reason, has_calls):
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
        if isinstance(data.get("error"), dict):
            raise UpstreamError(f"gemini upstream stream error: {data['error'].get('message')}")
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
            text, calls = read_parts(cand)
            delta = {}
            if index not in self.started:
                self.started.add(index)
                delta = {"role": "assistant", "content": ""}
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
    default_api_base = "https://generativelanguage.googleapis.com/v1beta"

    def __init__(self, deployment):
        super().__init__(deployment)
        params = deployment.params
        self.headers = {"Content-Type": "application/json"}
        if params.get("api_key"):
            self.headers["x-goog-api-key"] = params["api_key"]  # a header, so it never lands in URL logs
        self.headers.update(params.get("extra_headers") or {})
        self.stream_headers = dict(self.headers, **{"Accept": "text/event-stream",
                                                    "Accept-Encoding": "identity"})
        model = deployment.model  # "gemini-2.0-flash", or a full resource such as "tunedModels/x"
        self.resource = model if "/" in model else "models/" + model

    def chat(self, call, body):
        url = f"{self.api_base}/{self.resource}:generateContent"
        resp = self.send(call, url, to_request(self.deployment, body), headers=self.headers)
        return from_response(self.deployment, decode(resp.content))

    def chat_stream(self, call, body):
        url = f"{self.api_base}/{self.resource}:streamGenerateContent?alt=sse"
        payload = to_request(self.deployment, body)
        resp = self.send(call, url, payload, headers=self.stream_headers, stream=True)
        chunks = translate_stream(resp, StreamTranslator(self.deployment))
        first = next(chunks)  # read the first record now: an error in it can still be retried
        return resume(first, chunks)

    def map_error(self, status, body, headers):
        """Google's `{"error": {code, message, status, details}}` by SPEC §3; its status name is the `code`.

        An invalid key comes back as 400 with reason API_KEY_INVALID: our credential, so it counts as
        a 401. A 429's RetryInfo delay becomes Retry-After.
        """
        payload = parse_json(body)
        if isinstance(payload, list) and payload:  # the JSON-array stream framing wraps errors too
            payload = payload[0]
        err = payload.get("error") if isinstance(payload, dict) else None
        err = err if isinstance(err, dict) else {}
        message = str(err.get("message") or f"gemini upstream returned HTTP {status}")
        state = err.get("status")
        details = [d for d in err.get("details") or [] if isinstance(d, dict)]
        if status == 400 and (state == "UNAUTHENTICATED" or any(
                str(d.get("reason") or "").startswith("API_KEY_") for d in details)):
            status = 401
        retry_after = headers.get("retry-after") or retry_delay(details)
        return map_status(self.name, status, message, etype="invalid_request_error", code=state,
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
        yield from translator.feed(decode(data))
    yield from translator.finish()


def resume(first, chunks):
    yield first
    yield from chunks


def decode(content):
    data = parse_json(content)
    if not isinstance(data, dict):
        raise UpstreamError("gemini upstream returned a body that is not a JSON object")
    return data
