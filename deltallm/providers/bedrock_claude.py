"""What Bedrock Converse needs beyond the common fields: Claude's sampling rules, thinking and JSON mode."""
from deltallm.errors import InvalidRequest

EFFORTS = ("minimal", "low", "medium", "high")
# reasoning_effort -> Claude's thinking budget_tokens (Anthropic's minimum budget is 1024).
THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
ANSWER_TOKENS = 4096  # room left for the answer above the budget when the client set no limit
JSON_TOOL = "json_object"  # the forced tool whose input is a json_object answer
JSON_INSTRUCTION = ("Respond with a single valid JSON object and nothing else: "
                    "no prose, no Markdown code fences.")
# The minimal first turn Converse needs when a conversation opens with the assistant.
OPENING_TURN = {"role": "user", "content": [{"text": "."}]}


def is_claude(model):
    """Anthropic models, by foundation-model id, inference profile or ARN ("us.anthropic.claude-...")."""
    return "anthropic." in model or "claude" in model


def thinking_budget(body, claude):
    """The thinking budget reasoning_effort asks for, or None; a 400 where it cannot be applied."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise InvalidRequest(f"reasoning_effort must be one of {', '.join(EFFORTS)}", param="reasoning_effort")
    if not claude:
        raise InvalidRequest("reasoning_effort is supported on Bedrock for Anthropic Claude models only",
                             param="reasoning_effort")
    return THINKING_BUDGET[effort]


def sampling(body, config, claude, budget):
    """temperature/topP into inferenceConfig and top_k into the model fields, by Claude's rules:
    current Claude models refuse temperature and top_p together (temperature is kept), and extended
    thinking refuses any of them (all dropped)."""
    extra = {}
    if budget is not None:
        extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
        limit = config.get("maxTokens")
        if not limit or limit <= budget:  # Claude wants max_tokens above the budget
            config["maxTokens"] = budget + (limit or ANSWER_TOKENS)
        return extra
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None and not (claude and "temperature" in config):
        config["topP"] = body["top_p"]
    if body.get("top_k") is not None:
        if not claude:
            raise InvalidRequest("top_k is supported on Bedrock for Anthropic Claude models only", param="top_k")
        extra["top_k"] = body["top_k"]
    return extra


def json_object_tool(body, claude, budget):
    """(system text, forced toolConfig or None) for response_format json_object: the instruction always,
    and for Claude without tools or thinking (which refuses a forced tool) a tool whose input is the answer."""
    if (body.get("response_format") or {}).get("type") != "json_object":
        return None, None
    if not claude or budget is not None or (body.get("tools") and body.get("tool_choice") != "none"):
        return JSON_INSTRUCTION, None
    spec = {"name": JSON_TOOL, "description": "Give the answer, a JSON object, as this tool's input.",
            "inputSchema": {"json": {"type": "object"}}}
    return JSON_INSTRUCTION, {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": JSON_TOOL}}}


def reasoning_blocks(message):
    """The reasoningContent blocks an assistant message echoes back (LiteLLM's `thinking_blocks`), so
    Claude's signed thinking survives a tool loop."""
    blocks = []
    for block in message.get("thinking_blocks") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and block.get("signature"):
            blocks.append({"reasoningContent": {"reasoningText": {
                "text": block.get("thinking") or "", "signature": block["signature"]}}})
        elif block.get("type") == "redacted_thinking" and block.get("data"):
            blocks.append({"reasoningContent": {"redactedContent": block["data"]}})
    return blocks


def answer_tool(body, request):
    """JSON_TOOL when `request` forces it to carry a json_object answer (the client's own tools never are)."""
    forced = (request.get("toolConfig") or {}).get("toolChoice") == {"tool": {"name": JSON_TOOL}}
    own_tools = body.get("tools") and body.get("tool_choice") != "none"
    return JSON_TOOL if forced and not own_tools else None
