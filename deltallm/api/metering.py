"""Governance at the HTTP edge: admit a request before its upstream call (limits, budget), settle it
when its answer is done (real usage, cost, the usage record)."""
import math

from flask import current_app, g, request

from deltallm.governance import tokens


def gateway():
    return current_app.extensions["deltallm"]


def endpoint():
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return rule if rule.startswith("/v1/") else "/v1" + rule


def admit(call, model, body, stream=False):
    """Check and reserve the key's limits for this request (429/503 when refused)."""
    gw = gateway()
    policy = g.principal.policy
    price = gw.group_price(model) if policy is not None and policy.max_budget is not None else None
    call.tokenizer = gw.tokenizer_model(model)
    call.ticket = gw.gate.admit(policy, model, body, endpoint=endpoint(), stream=stream, price=price,
                                tokenizer_model=call.tokenizer, request_id=g.request_id)
    call.body = body


def close_streams(call):
    """Close what is still open upstream (a client that left mid-stream): counts and leases end now."""
    for stream in call.streams:
        stream.close()
    call.streams = []


def settle(call, status):
    """The answer is done: settle the reservations and write one usage record, or release them when
    no upstream was reached (the gateway refused or failed the request itself). Runs after a stream's
    last byte too, when the request and app contexts are gone: it uses only the call."""
    ticket = call.ticket
    if ticket is None:
        return
    close_streams(call)
    if call.attempts == 0 or call.deployment is None:
        ticket.abort()
        return
    usage = call.usage
    if usage is None and ticket.stream and call.body is not None:
        # cut before its usage chunk: what was seen so far
        prompt = tokens.count_prompt(call.body, call.tokenizer)
        completion = math.ceil(call.text_chars / 4)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    ticket.done(status, usage, deployment=call.deployment.id, price=call.deployment.price,
                charge_failure=call.answered, **call.units)
