"""Helpers shared by every fake provider, and the test directives embedded in prompt text.

`[[status:503]]` answers that HTTP status (once per distinct prompt when `[[once]]` is present too),
`[[sleep:0.2]]` waits before answering, `[[word-delay:0.1]]` paces a stream's words, `[[stream-break]]` cuts a stream after the first chunk.
Hostile upstreams (OpenAI fake): `[[huge-line:400]]` streams one chunk, then that many MB of a line that
never ends; `[[drip:1]]` sends the answer one byte every that many seconds; `[[reply-json:42]]`
answers 200 with that JSON (no `]` in it) instead of a completion.
Native fakes (Gemini, Bedrock): `[[finish:MALFORMED_FUNCTION_CALL]]` ends the answer, empty, with that
finishReason / stopReason (once per distinct prompt with `[[once]]`).
"""
import re
import time

import orjson

SEEN = set()
# prompt -> "finished" | "aborted", for streams; read back with GET /_streams
STREAMS = {}
_DIRECTIVE = re.compile(r"\[\[(\w[\w-]*)(?::([^\]]*))?\]\]")


def parse(text):
    return {m.group(1): m.group(2) for m in _DIRECTIVE.finditer(text or "")}


def apply(text):
    """Sleep if asked; return the forced status (or None)."""
    found = parse(text)
    if "sleep" in found:
        time.sleep(float(found["sleep"]))
    if "status" in found:
        if "once" in found:
            if text in SEEN:
                return None
            SEEN.add(text)
        return int(found["status"])
    return None


FINISHED = set()


def forced_finish(text):
    """The finish reason `[[finish:X]]` forces (None once a `[[once]]` prompt has had it)."""
    found = parse(text)
    if "finish" not in found:
        return None
    if "once" in found:
        if text in FINISHED:
            return None
        FINISHED.add(text)
    return found["finish"]


def reply_text(text):
    """The deterministic answer every fake gives: an echo of the last user text."""
    return "echo: " + _DIRECTIVE.sub("", text or "").strip()


def json_reply(status, obj, headers=None):
    return status, [("Content-Type", "application/json")] + list(headers or []), orjson.dumps(obj)
