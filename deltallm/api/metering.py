"""Governance at the HTTP edge: admit a request before its upstream call (limits, budget), settle it
when its answer is done (real usage, cost, the usage record)."""
from flask import current_app, g, request

from deltallm.governance.gate import close_streams, settle  # noqa: F401 - the views' names for them


def gateway():
    return current_app.extensions["deltallm"]


def endpoint():
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    if rule.startswith("/v2/"):  # Cohere's v2 paths (its SDK's) are the same endpoints
        rule = rule[3:]
    return rule if rule.startswith("/v1/") else "/v1" + rule


def admit(call, model, body, stream=False):
    """Check and reserve the key's limits for this request (429/503 when refused)."""
    gateway().admit(call, g.principal, model, body, endpoint=call.endpoint or endpoint(), stream=stream)
