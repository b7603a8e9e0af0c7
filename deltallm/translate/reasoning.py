"""Reasoning output items of the Responses API: the chat answer's reasoning text and signed thinking blocks."""
import base64
import binascii

import orjson

from deltallm.errors import InvalidRequest

# `encrypted_content` of the reasoning items this gateway returns: the provider's signed thinking blocks
# (Anthropic's signatures guard them), encoded, not encrypted; sent back in `input`, they continue a
# tool loop with thinking on. The prefix tells them from other services' reasoning items.
PREFIX = "dlt1:"


def encode(blocks):
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(blocks)).decode() if blocks else None


def decode(value, param):
    """The thinking blocks of a reasoning input item's `encrypted_content`; [] for other services' items,
    whose reasoning no other provider can read."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return []
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(value[len(PREFIX):]))
    except (binascii.Error, ValueError):
        blocks = None
    if not isinstance(blocks, list):
        raise InvalidRequest("encrypted_content is not a reasoning item this gateway returned", param=param)
    return blocks


def item(new_id, text, blocks, status):
    """A `reasoning` output item for a chat message's reasoning_content and thinking_blocks."""
    return {"id": new_id("rs"), "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else [],
            "encrypted_content": encode(blocks), "status": status}
