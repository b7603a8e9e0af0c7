"""Gemini generationConfig for an OpenAI chat request: sampling, limits, JSON output and thinking."""
import functools
import re

import orjson

from deltallm.errors import InvalidRequest
from deltallm.providers.gemini_schema import to_schema

CONFIG = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
          ("n", "candidateCount"), ("seed", "seed"))
PENALTIES = (("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
EFFORTS = ("minimal", "low", "medium", "high")
# reasoning_effort -> thinkingBudget on Gemini 2.5 (tokens; 2.5 Flash-Lite's minimum is 512, Pro's 128).
THINKING_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
# Gemini 3 takes thinkingLevel; its Pro models know only "low" and "high".
PRO_LEVEL = {"minimal": "low", "low": "low", "medium": "high", "high": "high"}
# Gemini 2.5 and later think, and refuse presencePenalty/frequencyPenalty ("Penalty is not enabled").
THINKING_MODEL = re.compile(r"gemini-(?:2\.5|[3-9])")
JSON_INSTRUCTION = ("Unless you call a function, respond with a single valid JSON object and nothing "
                    "else: no prose, no Markdown code fences.")


@functools.lru_cache(maxsize=256)
def generation(model):
    """3 for Gemini 3 and later, 2.5 for Gemini 2.5, 0 for older (non-thinking) models."""
    match = THINKING_MODEL.search(model)
    if not match:
        return 0
    return 2.5 if match.group(0).endswith("2.5") else 3


def generation_config(model, body, system):
    """The generationConfig dict; with tools, JSON output is asked for in `system` instead (see below)."""
    config = {dst: body[src] for src, dst in CONFIG if body.get(src) is not None}
    if not generation(model):  # a zero penalty means "none": never worth a refusal
        config.update((dst, body[src]) for src, dst in PENALTIES if body.get(src))
    limits = [body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    if limits:
        config["maxOutputTokens"] = limits[0]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type")
    if kind in ("json_object", "json_schema"):
        schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        if body.get("tools") and body.get("tool_choice") != "none":
            # Gemini 2.x refuses responseMimeType application/json next to functionDeclarations:
            # the tools are kept and the JSON answer is asked for in the system instruction.
            system.append({"text": json_instruction(schema)})
        else:
            config["responseMimeType"] = "application/json"
            if schema:
                config["responseSchema"] = to_schema(schema, "response_format.json_schema.schema", ordered=True)
    elif kind not in (None, "text"):
        raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format.type")
    effort = body.get("reasoning_effort")
    if effort is not None:
        config["thinkingConfig"] = thinking_config(model, effort)
    return config


def json_instruction(schema):
    if not schema:
        return JSON_INSTRUCTION
    return JSON_INSTRUCTION + " The object must validate against this JSON Schema: " + orjson.dumps(schema).decode()


def thinking_config(model, effort):
    """reasoning_effort as thinkingConfig (thinkingLevel on Gemini 3, thinkingBudget on 2.5), thoughts included."""
    if effort not in EFFORTS:
        raise InvalidRequest(f"reasoning_effort must be one of {', '.join(EFFORTS)}", param="reasoning_effort")
    gen = generation(model)
    if not gen:
        raise InvalidRequest(f"reasoning_effort is not supported by {model} (Gemini 2.5 and later think)",
                             param="reasoning_effort")
    if gen == 3:
        level = PRO_LEVEL[effort] if "pro" in model else effort
        return {"thinkingLevel": level, "includeThoughts": True}
    return {"thinkingBudget": THINKING_BUDGET[effort], "includeThoughts": True}
