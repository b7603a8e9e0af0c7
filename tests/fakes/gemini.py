"""Fake Gemini API (https://ai.google.dev/api/generate-content), written from Google's public reference.

`models/{model}:generateContent` answers `echo: <last user text>`; `:streamGenerateContent` needs
`alt=sse` and streams the same answer word by word as GenerateContentResponse SSE records (no
`[DONE]`: the stream just ends). A request with functionDeclarations whose last content is user text
gets a functionCall to the first declared (or first allowed) function with args {"q": <text>}.
`generationConfig.maxOutputTokens` truncates the answer (finishReason MAX_TOKENS) and
`candidateCount` repeats it. The key must come in `x-goog-api-key`; like Google, the fake refuses
unknown request fields, a wrong key (400 API_KEY_INVALID) and a missing key (403). Directives:
see common.py; forced statuses use Google's error shape (429 carries a RetryInfo detail).
Like Gemini 3, a `gemini-3*` model signs its functionCall parts (`thoughtSignature`, base64) and
refuses a history whose model turn has a functionCall without that exact signature (or Google's
documented placeholder "skip_thought_signature_validator") on its first one.
A `[[json]]` prompt under a responseSchema is answered with a JSON value built from that schema (the
first enum value, a number's minimum, a boolean or number the description's "One of: ..." names, as a
model reading it would). Like Google: Gemini 2.5 and later refuse presencePenalty/frequencyPenalty; thinkingConfig is refused
by older models, thinkingLevel by 2.5 and thinkingBudget by 3; responseMimeType application/json next
to functionDeclarations is refused; with includeThoughts the answer starts with a thought part.
"""
import itertools
from urllib.parse import parse_qs

import orjson

from tests.fakes import common as directives
from tests.fakes.common import json_reply

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
          504: "DEADLINE_EXCEEDED"}
# Fields of GenerateContentRequest and GenerationConfig (camelCase as documented; Google's JSON
# parser also takes the proto snake_case names).
REQUEST_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
                  "generationConfig", "cachedContent"}
CONFIG_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
                 "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP",
                 "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                 "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "mediaResolution"}
SCHEMA_FIELDS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                 "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                 "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                 "maximum"}
RESPONSE_IDS = itertools.count(1)
SIGNATURE = "ZmFrZSBzaWcg+/+/IQ=="  # base64 with "+", "/" and padding in it


class Refused(Exception):
    """Raised with the (status, headers, body) error reply a handler must return."""

    def __init__(self, reply):
        super().__init__(reply[0])
        self.reply = reply


def snake(name):
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def error(status, message, details=None, headers=None):
    body = {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}
    if details:
        body["details"] = details
    return json_reply(status, {"error": body}, headers)


def unknown_field(obj, known, where):
    """Google's complaint about the first field it cannot map, or None."""
    for name in obj or {}:
        if name not in known and name not in {snake(k) for k in known}:
            return error(400, f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': '
                              "Cannot find field.")
    return None


def schema_error(schema, where):
    if not isinstance(schema, dict):
        return None
    found = unknown_field(schema, SCHEMA_FIELDS, where)
    if found:
        return found
    nested = [(s, f"{where}.properties[{k}].value") for k, s in (schema.get("properties") or {}).items()]
    nested += [(schema.get("items"), f"{where}.items")]
    nested += [(s, f"{where}.any_of[{i}]") for i, s in enumerate(schema.get("anyOf") or [])]
    for sub, path in nested:
        found = schema_error(sub, path)
        if found:
            return found
    return None


def check_request(req, body):
    key = req.headers.get("x-goog-api-key")
    if not key:
        return error(403, "Method doesn't allow unregistered callers (callers without established "
                          "identity). Please use API Key or other form of API consumer identity to call this API.")
    if key != "upstream-secret":
        return error(400, "API key not valid. Please pass a valid API key.", [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
    if not isinstance(body, dict):
        return error(400, "Invalid JSON payload received.")
    found = unknown_field(body, REQUEST_FIELDS, "")
    found = found or unknown_field(body.get("generationConfig"), CONFIG_FIELDS, "generation_config")
    found = found or schema_error((body.get("generationConfig") or {}).get("responseSchema"),
                                  "generation_config.response_schema")
    for t, tool in enumerate(body.get("tools") or []):
        for d, decl in enumerate(tool.get("functionDeclarations") or []):
            found = found or schema_error(decl.get("parameters"),
                                          f"tools[{t}].function_declarations[{d}].parameters")
    if found:
        return found
    found = model_problem(req.match.group("model"), body)
    if found:
        return error(400, found)
    contents = body.get("contents")
    if not contents:
        return error(400, "* GenerateContentRequest.contents: contents is not specified\n")
    if req.match.group("model").startswith("gemini-3"):
        for i, content in enumerate(contents):
            calls = [p for p in content.get("parts") or [] if "functionCall" in p]
            if calls and calls[0].get("thoughtSignature") not in (SIGNATURE, "skip_thought_signature_validator"):
                return error(400, "Function call is missing a thought_signature in functionCall parts. "
                                  f"Additional data, function call `{calls[0]['functionCall'].get('name')}`, "
                                  f"position {i + 1}.")
    for i, content in enumerate(contents):
        if content.get("role", "user") not in ("user", "model"):
            return error(400, "Please use a valid role: user, model.")
        if not content.get("parts"):
            return error(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
    return None


def model_problem(model, body):
    """What this model generation refuses in generationConfig, or None."""
    config = body.get("generationConfig") or {}
    generation = 3 if model.startswith("gemini-3") else 2.5 if model.startswith("gemini-2.5") else 0
    if generation and ({"presencePenalty", "frequencyPenalty"} & set(config)):
        return "Penalty is not enabled for this model"
    thinking = config.get("thinkingConfig")
    if thinking is not None and (not generation or ("thinkingLevel" in thinking) == (generation == 2.5)):
        return "Thinking level/budget is not supported for this model."
    if config.get("responseMimeType") == "application/json" and body.get("tools"):
        return "Function calling with a response mime type: 'application/json' is unsupported"
    return None


def thought(body, prompt):
    """The thought summary part an includeThoughts request gets first, or None."""
    if ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts"):
        return {"text": "Thinking about: " + prompt, "thought": True}
    return None


def last_user_text(contents):
    for content in reversed(contents):  # turns holding only functionResponse parts are skipped
        texts = [p["text"] for p in content["parts"] if "text" in p]
        if content.get("role", "user") == "user" and texts:
            return " ".join(texts)
    return ""


def function_call(body, text):
    """The functionCall part to answer with, or None (no tools, mode NONE, or last turn not user text)."""
    names = [d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    last = body["contents"][-1]
    if not names or calling.get("mode") == "NONE" or last.get("role", "user") != "user" \
            or not any("text" in p for p in last["parts"]):
        return None
    name = (calling.get("allowedFunctionNames") or names)[0]
    return {"functionCall": {"name": name, "args": {"q": text}}}


def signed(part, model):
    return dict(part, thoughtSignature=SIGNATURE) if part and model.startswith("gemini-3") else part


def answer(req):
    """(body, prompt, words of the reply, finishReason, functionCall part or None); raises Refused."""
    body = req.json()
    denied = check_request(req, body)
    if denied:
        raise Refused(denied)
    prompt = last_user_text(body["contents"])
    status = directives.apply(prompt)
    if status:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}] \
            if status == 429 else None
        raise Refused(error(status, f"forced status {status}", details))
    words = directives.reply_text(prompt).split()
    limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
    finish = "STOP"
    if limit is not None and len(words) > limit:
        words, finish = words[:limit], "MAX_TOKENS"
    forced = directives.forced_finish(prompt)
    if forced:
        return body, prompt, [], forced, None
    schema = (body.get("generationConfig") or {}).get("responseSchema")
    if schema and "json" in directives.parse(prompt):
        return body, prompt, [orjson.dumps(example(schema)).decode()], finish, None
    return body, prompt, words, finish, function_call(body, directives.reply_text(prompt))


def example(schema):
    """A value valid against a Gemini Schema, as a model following it (and its description) answers."""
    kind = schema.get("type")
    named = (schema.get("description") or "").rpartition("One of: ")[2].rstrip(".")
    if kind == "OBJECT":
        return {name: example(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "ARRAY":
        return [example(schema.get("items") or {"type": "STRING"})]
    if schema.get("enum"):
        return schema["enum"][0]
    if kind in ("INTEGER", "NUMBER", "BOOLEAN") and named:
        return orjson.loads(named.split(", ")[0])
    if kind in ("INTEGER", "NUMBER"):
        return schema.get("minimum", 0)
    return {"BOOLEAN": False, "STRING": "text"}.get(kind) if kind else None


def usage(body, output_tokens):
    prompt = sum(len(p.get("text", "").split()) for c in body["contents"] for p in c["parts"]) + 3
    return {"promptTokenCount": prompt, "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}


def response(body, model, parts, finish, output_tokens, response_id):
    count = (body.get("generationConfig") or {}).get("candidateCount") or 1
    candidates = [{"content": {"parts": parts, "role": "model"}, "index": i} for i in range(count)]
    for candidate in candidates:
        if finish:
            candidate["finishReason"] = finish
    return {"candidates": candidates, "usageMetadata": usage(body, output_tokens),
            "modelVersion": model + "-001", "responseId": response_id}


def generate(req):
    try:
        body, _prompt, words, finish, call = answer(req)
    except Refused as refused:
        return refused.reply
    model = req.match.group("model")
    parts = [signed(call, model)] if call else [{"text": " ".join(words)}]
    parts = [p for p in (thought(body, _prompt),) if p] + parts
    return json_reply(200, response(body, model, parts, finish, len(words), f"fake-{next(RESPONSE_IDS)}"))


def stream(req):
    if parse_qs(req.query).get("alt") != ["sse"]:
        return error(400, "fake Gemini API: streamGenerateContent is only served with alt=sse")
    try:
        body, prompt, words, finish, call = answer(req)
    except Refused as refused:
        return refused.reply
    model, response_id = req.match.group("model"), f"fake-{next(RESPONSE_IDS)}"
    brk = "stream-break" in directives.parse(prompt)

    def record(parts, done, sent):
        data = response(body, model, parts, finish if done else None, sent, response_id)
        return b"data: " + orjson.dumps(data) + b"\r\n\r\n"

    def gen():
        first = thought(body, prompt)
        if first:
            yield record([first], False, 0)
        if call:
            yield record([signed(call, model)], True, 1)
            return
        for i, word in enumerate(words):
            yield record([{"text": (" " if i else "") + word}], i == len(words) - 1, i + 1)
            if brk:
                raise ConnectionError("stream-break directive")
        if not words:
            yield record([{"text": ""}], True, 0)
    return 200, [("Content-Type", "text/event-stream")], gen()


ROUTES = [
    ("POST", r"/v1beta/models/(?P<model>[^/:]+):generateContent", generate),
    ("POST", r"/v1beta/models/(?P<model>[^/:]+):streamGenerateContent", stream),
]
