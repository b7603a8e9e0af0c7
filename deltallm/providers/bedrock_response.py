"""Bedrock Converse responses and ConverseStream events as OpenAI chat completions and chunks."""
import time
import uuid

import orjson

from deltallm.errors import UpstreamError

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
# Stops where the model produced nothing usable: an upstream error the router retries or fails over.
BROKEN = {"malformed_tool_use": "an invalid tool call", "malformed_model_output": "malformed output"}


def finish_reason(stop, answer_tool=None):
    if stop in BROKEN:
        raise UpstreamError(f"bedrock upstream stopped with {stop}: the model produced {BROKEN[stop]}")
    if answer_tool and stop == "tool_use":
        return "stop"  # the forced json_object tool carried the answer
    return STOP_REASONS.get(stop, "stop")


def from_response(deployment, data, response_id=None, answer_tool=None):
    """An OpenAI chat.completion for a Converse response; Claude's reasoning comes back as
    `reasoning_content` and its signed blocks as `thinking_blocks` (LiteLLM's names) to echo back."""
    text, tool_calls, thinking = [], [], []
    for block in ((data.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            if answer_tool and use.get("name") == answer_tool:
                text.append(arguments)
                continue
            tool_calls.append({"id": use.get("toolUseId"), "type": "function", "function": {
                "name": use.get("name"), "arguments": arguments}})
        elif "reasoningContent" in block:
            thinking.append(thinking_block(block["reasoningContent"]))
        # citations, images ...: no OpenAI chat equivalent, dropped
    message = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None,
               "refusal": None}
    if thinking:
        message["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        message["thinking_blocks"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": response_id or new_id(), "object": "chat.completion", "created": int(time.time()),
            "model": deployment.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(data.get("stopReason"), answer_tool)}],
            "usage": usage(data.get("usage"))}


def thinking_block(reasoning):
    """A Converse reasoningContent block as an Anthropic-style thinking / redacted_thinking block."""
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning.get("reasoningText") or {}
    return {"type": "thinking", "thinking": text.get("text") or "", "signature": text.get("signature")}


def usage(raw):
    raw = raw or {}
    cached = raw.get("cacheReadInputTokens") or 0
    prompt = (raw.get("inputTokens") or 0) + cached + (raw.get("cacheWriteInputTokens") or 0)
    completion = raw.get("outputTokens") or 0
    result = {"prompt_tokens": prompt, "completion_tokens": completion,
              "total_tokens": prompt + completion}
    if cached:
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    return result


def new_id():
    return "chatcmpl-" + uuid.uuid4().hex


class StreamState:
    """What translating one ConverseStream remembers between events."""

    def __init__(self, deployment, response_id=None, answer_tool=None):
        self.id = response_id or new_id()
        self.answer_tool = answer_tool  # the forced json_object tool, streamed as content
        self.answers = set()  # its contentBlockIndex
        self.reasoning = {}  # contentBlockIndex -> reasoning text so far (for its thinking block)
        self.model = deployment.model
        self.created = int(time.time())
        self.role_sent = False
        self.finished = False
        self.tools = {}  # Converse contentBlockIndex -> OpenAI tool_calls index
        self.filled = set()  # tool blocks whose input got any JSON text

    def chunk(self, delta, finish_reason=None, **extra):
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices, **extra}


def from_stream_event(state, event, payload):
    """The OpenAI chunks (often none) that one ConverseStream event stands for."""
    out = []
    if not state.role_sent and event in ("messageStart", "contentBlockStart", "contentBlockDelta",
                                         "messageStop"):
        state.role_sent = True
        out.append(state.chunk({"role": "assistant", "content": ""}))
    index = payload.get("contentBlockIndex")
    if event == "contentBlockStart":
        use = (payload.get("start") or {}).get("toolUse")
        if use and state.answer_tool and use.get("name") == state.answer_tool:
            state.answers.add(index)
        elif use:
            state.tools[index] = len(state.tools)
            out.append(state.chunk({"tool_calls": [{
                "index": state.tools[index], "id": use.get("toolUseId"), "type": "function",
                "function": {"name": use.get("name"), "arguments": ""}}]}))
    elif event == "contentBlockDelta":
        delta = payload.get("delta") or {}
        if delta.get("text"):
            out.append(state.chunk({"content": delta["text"]}))
        elif "reasoningContent" in delta:
            out.extend(reasoning_chunks(state, index, delta["reasoningContent"]))
        elif "toolUse" in delta and index in state.answers:
            arguments = delta["toolUse"].get("input") or ""
            state.filled.update([index] if arguments else [])
            out.append(state.chunk({"content": arguments}))
        elif "toolUse" in delta and index in state.tools:
            arguments = delta["toolUse"].get("input") or ""
            state.filled.update([index] if arguments else [])
            out.append(state.chunk({"tool_calls": [{"index": state.tools[index], "function": {
                "arguments": arguments}}]}))
    elif event == "contentBlockStop" and index in state.tools and index not in state.filled:
        # a tool called without input streams no JSON, which would leave the client with arguments
        # "" (json.loads fails); OpenAI and the non-streamed answer say "{}"
        out.append(state.chunk({"tool_calls": [{"index": state.tools[index], "function": {"arguments": "{}"}}]}))
    elif event == "contentBlockStop" and index in state.answers and index not in state.filled:
        out.append(state.chunk({"content": "{}"}))
    elif event == "messageStop":
        state.finished = True
        out.append(state.chunk({}, finish_reason(payload.get("stopReason"), state.answer_tool)))
    elif event == "metadata" and payload.get("usage"):
        out.append(state.chunk(None, usage=usage(payload["usage"])))
    return out




def reasoning_chunks(state, index, reasoning):
    """Reasoning text as `reasoning_content` deltas; once its signature (or redacted data) arrives, the
    whole block as a `thinking_blocks` delta the client echoes back."""
    if reasoning.get("text"):
        state.reasoning[index] = state.reasoning.get(index, "") + reasoning["text"]
        return [state.chunk({"reasoning_content": reasoning["text"]})]
    if reasoning.get("signature"):
        block = {"type": "thinking", "thinking": state.reasoning.pop(index, ""), "signature": reasoning["signature"]}
        return [state.chunk({"thinking_blocks": [block]})]
    if reasoning.get("redactedContent"):
        return [state.chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": reasoning["redactedContent"]}]})]
    return []
