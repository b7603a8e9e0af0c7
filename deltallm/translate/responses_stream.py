"""Chat completion chunks as the Responses API's streaming events, in OpenAI's order."""
import copy
import logging

from deltallm.errors import GatewayError
from deltallm.translate.responses import (INCOMPLETE, encode_reasoning, finish, function_item, message_item,
                                          reasoning_item, responses_usage, skeleton, text_part, wants_logprobs)

# part kind -> (item type, delta event, done event, the part's text key)
PARTS = {"output_text": ("message", "response.output_text.delta", "response.output_text.done", "text"),
         "refusal": ("message", "response.refusal.delta", "response.refusal.done", "refusal"),
         "reasoning_text": ("reasoning", "response.reasoning_text.delta", "response.reasoning_text.done", "text")}

logger = logging.getLogger(__name__)


def response_error_code(exc):
    """The Response.error code (a closed enum in OpenAI's schema) for a gateway failure."""
    return "rate_limit_exceeded" if getattr(exc, "type", None) == "rate_limit_error" else "server_error"


class EventStream:
    """Chat chunks in, Responses stream events out (each with its sequence_number), in OpenAI's order.

    Output items open as the chunks call for them (a message item holding output_text / refusal
    parts, or one function_call item per chat tool call) and close before the next one opens. A
    failure while reading the chunks becomes an `error` event followed by `response.failed`.
    """

    def __init__(self, req, request_id=None):
        self.response = skeleton(req)
        self.logprobs = wants_logprobs(req)
        self.request_id = request_id
        self.sequence = 0
        self.output, self.item, self.part, self.tool_index = [], None, None, None
        self.thinking = []  # the open reasoning item's signed thinking blocks
        self.model = self.usage = self.finish_reason = None

    def events(self, chunks):
        yield self.emit("response.created", response=self.snapshot())
        yield self.emit("response.in_progress", response=self.snapshot())
        try:
            for chunk in chunks:
                yield from self.on_chunk(chunk)
            yield from self.close_item()
            resp = finish(self.snapshot(), model=self.model, output=self.output,
                          finish_reason=self.finish_reason, usage=self.usage)
            yield self.emit(f"response.{resp['status']}", response=resp)
        except Exception as exc:  # noqa: BLE001 - a stream must end readably, whatever broke
            yield from self.fail(exc)

    def emit(self, kind, **fields):
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def snapshot(self):
        return dict(copy.deepcopy(self.response), output=copy.deepcopy(self.output))

    def on_chunk(self, chunk):
        self.model = chunk.get("model") or self.model
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                yield from self.text("reasoning_text", delta["reasoning_content"])
            if delta.get("thinking_blocks"):
                if self.item is None or self.item["type"] != "reasoning":
                    yield from self.open_item(reasoning_item(None, None, "in_progress"))
                self.thinking += delta["thinking_blocks"]
            if delta.get("content"):
                logprobs = (choice.get("logprobs") or {}).get("content") if self.logprobs else None
                yield from self.text("output_text", delta["content"], logprobs or [])
            if delta.get("refusal"):
                yield from self.text("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                yield from self.tool_call(call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def where(self):
        return {"item_id": self.item["id"], "output_index": len(self.output)}

    def open_item(self, item):
        yield from self.close_item()
        self.item = item
        yield self.emit("response.output_item.added", output_index=len(self.output), item=copy.deepcopy(item))

    def close_item(self):
        if self.item is None:
            return
        yield from self.close_part()
        item = self.item
        if item["type"] == "function_call":
            yield self.emit("response.function_call_arguments.done", **self.where(), name=item["name"],
                            arguments=item["arguments"])
        if item["type"] == "reasoning":
            item["encrypted_content"], self.thinking = encode_reasoning(self.thinking), []
        item["status"] = "incomplete" if self.finish_reason in INCOMPLETE else "completed"
        self.output.append(item)
        self.item = None
        yield self.emit("response.output_item.done", output_index=len(self.output) - 1,
                        item=copy.deepcopy(item))

    def text(self, kind, delta, logprobs=()):
        item_type, delta_event, _, key = PARTS[kind]
        if self.item is None or self.item["type"] != item_type:
            yield from self.open_item(message_item([], "in_progress") if item_type == "message"
                                      else reasoning_item(None, None, "in_progress"))
        if self.part != kind:
            yield from self.close_part()
            part = text_part() if kind == "output_text" else {"type": kind, key: ""}
            self.item["content"].append(part)
            self.part = kind
            yield self.emit("response.content_part.added", **self.where(),
                            content_index=len(self.item["content"]) - 1, part=copy.deepcopy(part))
        index = len(self.item["content"]) - 1
        self.item["content"][index][key] += delta
        if kind == "output_text":
            self.item["content"][index]["logprobs"].extend(logprobs)
            yield self.emit(delta_event, **self.where(), content_index=index, delta=delta, logprobs=list(logprobs))
        else:
            yield self.emit(delta_event, **self.where(), content_index=index, delta=delta)

    def close_part(self):
        if self.part is None:
            return
        index = len(self.item["content"]) - 1
        part = self.item["content"][index]
        _, _, done_event, key = PARTS[self.part]
        extra = {"logprobs": copy.deepcopy(part["logprobs"])} if self.part == "output_text" else {}
        yield self.emit(done_event, **self.where(), content_index=index, **{key: part[key]}, **extra)
        self.part = None
        yield self.emit("response.content_part.done", **self.where(), content_index=index,
                        part=copy.deepcopy(part))

    def tool_call(self, call):
        fn = call.get("function") or {}
        index = call.get("index", 0)
        item = self.item
        if (item is None or item["type"] != "function_call" or index != self.tool_index
                or (call.get("id") and call["id"] != item["call_id"])):
            self.tool_index = index
            yield from self.open_item(function_item(call.get("id"), fn.get("name"), "", "in_progress"))
        elif fn.get("name") and not item["name"]:
            item["name"] = fn["name"]
        if fn.get("arguments"):
            self.item["arguments"] += fn["arguments"]
            yield self.emit("response.function_call_arguments.delta", **self.where(),
                            delta=fn["arguments"])

    def fail(self, exc):
        if isinstance(exc, GatewayError):
            code, message, param = exc.code or exc.type, exc.message, exc.param
        else:
            logger.exception("request %s: responses stream failed", self.request_id)
            code, param = "server_error", None
            message = (f"The server had an error while processing your request "
                       f"(request id {self.request_id}).")
        yield self.emit("error", code=code, message=message, param=param)
        resp = self.snapshot()
        if self.item is not None:
            resp["output"].append(dict(copy.deepcopy(self.item), status="incomplete"))
        resp.update(status="failed", model=self.model or resp["model"],
                    error={"code": response_error_code(exc), "message": message})
        if self.usage:
            resp["usage"] = responses_usage(self.usage)
        yield self.emit("response.failed", response=resp)
