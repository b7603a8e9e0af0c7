"""OpenAI message content as Anthropic content blocks: text, images, PDFs, thinking and cache_control."""
from deltallm.errors import InvalidRequest

# The only image types the Messages API accepts; "image/jpg" is a common alias of image/jpeg.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
IMAGE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}


def text_of(content):
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def cache_control(holder, where):
    """The `cache_control` of a part, message or tool (LiteLLM's convention), checked; None if absent."""
    value = holder.get("cache_control")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest("cache_control must be {\"type\": \"ephemeral\"} (with an optional ttl)",
                             param=f"{where}.cache_control")
    return value


def message_cache(message, where):
    """The cache breakpoint a whole message asks for: its own, or the last one among its parts."""
    found = cache_control(message, where)
    content = message.get("content")
    for j, part in enumerate(content if isinstance(content, list) else []):
        if isinstance(part, dict):
            found = cache_control(part, f"{where}.content[{j}]") or found
    return found


def marked(block, control):
    if control is not None:
        block["cache_control"] = control
    return block


def system_blocks(message, where):
    """Text blocks of a system/developer message; parts stay separate blocks only when one carries a
    cache breakpoint (otherwise they are joined, as before, into one block)."""
    content = message.get("content")
    if isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content):
        return [marked({"type": "text", "text": p["text"]}, cache_control(p, f"{where}.content[{j}]"))
                for j, p in enumerate(content)
                if isinstance(p, dict) and p.get("type") == "text" and (p.get("text") or "").strip()]
    text = text_of(content)
    return [marked({"type": "text", "text": text}, cache_control(message, where))] if text.strip() else []


def user_blocks(message, where):
    content = message.get("content")
    if not isinstance(content, list):
        block = {"type": "text", "text": content}
        return [marked(block, cache_control(message, where))] if (content or "").strip() else []
    blocks = []
    for j, part in enumerate(content):
        kind, here = part.get("type"), f"{where}.content[{j}]"
        if kind == "text":
            if (part.get("text") or "").strip():
                blocks.append(marked({"type": "text", "text": part["text"]}, cache_control(part, here)))
        elif kind == "image_url":
            blocks.append(marked(image_block(part.get("image_url"), f"{here}.image_url.url"),
                                 cache_control(part, here)))
        elif kind == "file":
            blocks.append(marked(document_block(part.get("file") or {}, f"{here}.file"),
                                 cache_control(part, here)))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Anthropic models",
                                 param=f"{here}.type")
    if blocks and message.get("cache_control") is not None:
        marked(blocks[-1], cache_control(message, where))
    return blocks


def base64_source(url):
    """'data:image/png;base64,XXX' -> an Anthropic base64 source; None for anything else."""
    header, sep, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    fields = header.split(";")
    if sep and fields[0] and fields[-1] == "base64":
        return {"type": "base64", "media_type": fields[0].lower(), "data": data}
    return None


def image_block(ref, param):
    url = ref.get("url") if isinstance(ref, dict) else ref
    url = url if isinstance(url, str) else ""
    source = base64_source(url)
    if source:
        source["media_type"] = IMAGE_ALIASES.get(source["media_type"], source["media_type"])
        if source["media_type"] not in IMAGE_TYPES:  # refused here rather than by the upstream
            raise InvalidRequest(f"image type {source['media_type']!r} is not supported by Anthropic models; "
                                 f"send one of {', '.join(IMAGE_TYPES)}", param=param)
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequest("image_url.url must be an http(s) URL or a base64 data URL", param=param)
    return {"type": "image", "source": source}


def document_block(file, param):
    source = base64_source(file.get("file_data") or "")
    if not source or source["media_type"] != "application/pdf":
        # file_id refers to OpenAI's file store, which Anthropic cannot read
        raise InvalidRequest("Anthropic models accept files only as base64 PDF data URLs in file_data",
                             param=param)
    return {"type": "document", "source": source}


def thinking_blocks(message, where):
    """An assistant message's `thinking_blocks` (as this gateway and LiteLLM return them) as the signed
    thinking / redacted_thinking blocks Anthropic needs back to continue a tool loop with thinking on."""
    blocks = message.get("thinking_blocks")
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        raise InvalidRequest("thinking_blocks must be an array", param=f"{where}.thinking_blocks")
    out = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str):
            out.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise InvalidRequest("a thinking block must be {type: thinking, thinking, signature} or "
                                 "{type: redacted_thinking, data}", param=f"{where}.thinking_blocks[{j}]")
    return out
