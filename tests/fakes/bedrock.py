"""Fake Amazon Bedrock Runtime Converse / ConverseStream, written from the public API reference.

POST /model/{modelId}/converse answers JSON; /converse-stream answers a binary
application/vnd.amazon.eventstream (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata).
Requests need a SigV4-looking Authorization header and X-Amz-Date (the signature is not checked);
an access key id starting with "INVALID" is refused like an unknown key. The reply is
`echo: <last user text>`; with toolConfig and a user turn ending in text it calls the first (or the
forced) tool with {"q": <text>}. Directives (common.py) plus `[[stream-exception:throttlingException]]`,
which sends that exception frame in place of the stream's first event.
Claude models (ids with "anthropic.") follow Anthropic's rules: temperature and topP together are
refused, and with `additionalModelRequestFields.thinking` enabled (budget >= 1024, maxTokens above it,
no sampling settings) the answer starts with a signed reasoningContent block, and a history whose last
assistant turn calls a tool must start that turn with the reasoning block it was given.
"""
import struct
import uuid
import zlib

import orjson

from tests.fakes import common as directives

BODY_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
               "additionalModelRequestFields", "additionalModelResponseFieldPaths",
               "promptVariables", "requestMetadata", "performanceConfig", "outputConfig"}
INFERENCE_FIELDS = {"maxTokens", "temperature", "topP", "stopSequences"}
BLOCK_TYPES = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
               "reasoningContent", "cachePoint"}
# forced status -> (x-amzn-ErrorType, message), as the Bedrock error reference lists them
ERRORS = {400: ("ValidationException", "forced validation error"),
          403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
          404: ("ResourceNotFoundException", "Could not resolve the foundation model."),
          408: ("ModelTimeoutException", "Model has timed out in processing the request."),
          424: ("ModelErrorException", "The model produced an error."),
          429: ("ThrottlingException", "Too many requests, please wait before trying again."),
          500: ("InternalServerException", "The server encountered an internal error."),
          503: ("ServiceUnavailableException", "Bedrock is unable to process your request.")}


# -- the event stream wire format -------------------------------------------------------------
def encode_header(name, value):
    """A header whose value is a string (value type 7): name length, name, 7, value length, value."""
    name, value = name.encode(), value.encode()
    return struct.pack("!B", len(name)) + name + struct.pack("!BH", 7, len(value)) + value


def encode_message(headers, payload):
    """One frame: total length, headers length, prelude CRC32, headers, payload, message CRC32."""
    raw_headers = b"".join(encode_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    body = prelude + struct.pack("!I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(event_type, payload):
    # Bedrock pads event payloads with a random "p" field so sizes leak nothing; clients ignore it.
    payload = dict(payload, p="abcdefghijklmnopqrstuvwxyz"[:len(event_type) + 4])
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, orjson.dumps(payload))


def exception(kind, message):
    return encode_message({":exception-type": kind, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message}))


# -- requests -----------------------------------------------------------------------------------
def error(status, kind, message):
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4())),
               ("x-amzn-ErrorType", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")]
    return status, headers, orjson.dumps({"message": message})


def check_auth(req):
    auth = req.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 ") or not req.headers.get("x-amz-date"):
        return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    credential = auth.partition("Credential=")[2].split(",")[0]
    if credential.startswith("INVALID") or not credential.endswith("/bedrock/aws4_request"):
        return error(403, "UnrecognizedClientException",
                     "The security token included in the request is invalid.")
    return None


REASONING_SIGNATURE = "ZmFrZS1iZWRyb2NrLXNpZw=="


def thinking(body):
    """The enabled thinking config of a request, or None."""
    found = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
    return found if found.get("type") == "enabled" else None


def claude_problem(body):
    """Anthropic's own refusals, as Bedrock relays them for Claude models."""
    inference = body.get("inferenceConfig") or {}
    extra = body.get("additionalModelRequestFields") or {}
    if "temperature" in inference and "topP" in inference:
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    config = thinking(body)
    if config is None:
        return None
    if (config.get("budget_tokens") or 0) < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if (inference.get("maxTokens") or 0) <= config["budget_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if "temperature" in inference or "topP" in inference or "top_k" in extra:
        return "temperature, top_p and top_k may not be set while thinking is enabled."
    assistant = [m for m in body.get("messages") or [] if m.get("role") == "assistant"]
    if assistant and any("toolUse" in b for b in assistant[-1]["content"]):
        first = assistant[-1]["content"][0].get("reasoningContent") or {}
        if (first.get("reasoningText") or {}).get("signature") != REASONING_SIGNATURE:
            return ("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with "
                    "a thinking block.")
    return None


def validate(body, model=""):
    """The ValidationException checks of the Converse reference that a translator can get wrong."""
    if "anthropic." in model:
        problem = claude_problem(body)
        if problem:
            return problem
    unknown = set(body) - BODY_FIELDS
    if unknown:
        return f"Unknown field(s): {sorted(unknown)}"
    if set(body.get("inferenceConfig") or {}) - INFERENCE_FIELDS:
        return "Malformed input request: inferenceConfig has unknown fields"
    if "outputConfig" in body:
        text_format = (body["outputConfig"] or {}).get("textFormat") or {}
        schema = ((text_format.get("structure") or {}).get("jsonSchema") or {}).get("schema")
        if set(body["outputConfig"]) != {"textFormat"} or text_format.get("type") != "json_schema" \
                or not isinstance(schema, str):
            return "outputConfig.textFormat needs type json_schema and structure.jsonSchema.schema (a JSON string)"
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        return ("A conversation must start with a user message. Try again with a conversation that "
                "starts with a user message.")
    for previous, message in zip(messages, messages[1:]):
        if previous.get("role") == message.get("role"):
            return ("A conversation must alternate between user and assistant roles. Make sure the "
                    "conversation alternates between user and assistant roles and try again.")
    for message in messages:
        if message.get("role") not in ("user", "assistant") or not message.get("content"):
            return "Each message needs role user or assistant and at least one content block."
        for block in message["content"]:
            if len(block) != 1 or next(iter(block)) not in BLOCK_TYPES:
                return "Each content block must set exactly one member."
            if "text" in block and not block["text"].strip():
                return ("The text field in the ContentBlock object is blank. Add text to the text "
                        "field, and try again.")
            if ("toolUse" in block or "toolResult" in block) and not body.get("toolConfig"):
                return ("The toolConfig field must be defined when using toolUse and toolResult "
                        "content blocks.")
    return None


def last_user_text(messages):
    last = messages[-1] if messages else {}
    if last.get("role") != "user":
        return ""
    return " ".join(b["text"] for b in last["content"] if "text" in b)


def answer(body):
    """(content blocks, stopReason, usage) for a request."""
    messages = body["messages"]
    text = directives.reply_text(last_user_text(messages))
    tools = (body.get("toolConfig") or {}).get("tools") or []
    input_tokens = sum(len(str(b).split()) for m in messages for b in m["content"]) + 3
    last = messages[-1]["content"][-1]
    reasoning = [{"reasoningContent": {"reasoningText": {
        "text": "Thinking about: " + last_user_text(messages), "signature": REASONING_SIGNATURE}}}] if thinking(body) else []
    if tools and "text" in last:
        forced = ((body["toolConfig"].get("toolChoice") or {}).get("tool") or {}).get("name")
        name = forced or tools[0]["toolSpec"]["name"]
        blocks = [{"toolUse": {"toolUseId": "tooluse_fake1", "name": name, "input": {"q": text}}}]
        return reasoning + blocks, "tool_use", (input_tokens, 9)
    words = text.split()
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = "end_turn"
    if limit and len(words) > limit:
        words, stop = words[:limit], "max_tokens"
    return reasoning + [{"text": " ".join(words)}], stop, (input_tokens, len(words))


def usage(tokens):
    return {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)}


def stream(blocks, stop, tokens, prompt):
    found = directives.parse(prompt)

    def gen():
        if found.get("stream-exception"):
            yield exception(found["stream-exception"], "forced stream exception")
            return
        yield event("messageStart", {"role": "assistant"})
        if "stream-break" in found:
            raise ConnectionError("stream-break directive")
        for index, block in enumerate(blocks):
            if "reasoningContent" in block:
                text = block["reasoningContent"]["reasoningText"]
                for delta in ({"text": text["text"]}, {"signature": text["signature"]}):
                    yield event("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"reasoningContent": delta}})
            elif "toolUse" in block:
                use = block["toolUse"]
                yield event("contentBlockStart", {"contentBlockIndex": index, "start": {
                    "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}})
                raw = orjson.dumps(use["input"]).decode()
                for piece in (raw[:5], raw[5:]):  # input arrives as fragments of a JSON string
                    yield event("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"toolUse": {"input": piece}}})
            else:
                for i, word in enumerate(block["text"].split()):
                    yield event("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"text": (" " if i else "") + word}})
            yield event("contentBlockStop", {"contentBlockIndex": index})
        yield event("messageStop", {"stopReason": stop})
        yield event("metadata", {"usage": usage(tokens), "metrics": {"latencyMs": 42}})
    return 200, [("Content-Type", "application/vnd.amazon.eventstream"),
                 ("x-amzn-RequestId", str(uuid.uuid4()))], gen()


def handle(req, streaming):
    denied = check_auth(req)
    if denied:
        return denied
    try:
        body = req.json() or {}
    except orjson.JSONDecodeError:
        return error(400, "ValidationException",
                     "Malformed input request, please reformat your input and try again.")
    problem = validate(body, req.match.group("model"))
    if problem:
        return error(400, "ValidationException", problem)
    prompt = last_user_text(body["messages"])
    status = directives.apply(prompt)
    if status:
        kind, message = ERRORS.get(status, ("InternalServerException", f"forced status {status}"))
        return error(status, kind, message)
    blocks, stop, tokens = answer(body)
    forced = directives.forced_finish(prompt)
    if forced:
        blocks, stop = [], forced
    if streaming:
        return stream(blocks, stop, tokens, prompt)
    reply = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
             "usage": usage(tokens), "metrics": {"latencyMs": 42}}
    return 200, [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))], \
        orjson.dumps(reply)


ROUTES = [
    ("POST", r"/model/(?P<model>[^/]+)/converse", lambda req: handle(req, False)),
    ("POST", r"/model/(?P<model>[^/]+)/converse-stream", lambda req: handle(req, True)),
]
