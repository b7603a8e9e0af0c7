"""The request path's one entry into governance: admit() before the upstream call (limits, budget,
token and cost reservation), Ticket.done() after it (settle, usage record)."""
import logging
import math
import time
import uuid

from deltallm.governance import prices, tokens
from deltallm.governance.limits import Policy
from deltallm.governance.usage import make_record

logger = logging.getLogger(__name__)


class Ticket:
    """One admitted request. `headers` go on the response (success or upstream error); exactly one of
    done() / abort() takes effect, later calls do nothing."""

    def __init__(self, gate, grant, policy, model, endpoint, stream, request_id, batch_id=None):
        self.gate, self.grant, self.policy, self.model = gate, grant, policy, model
        self.endpoint, self.stream, self.request_id = endpoint, stream, request_id
        self.batch_id = batch_id
        self.headers = grant.headers
        self.started = time.monotonic()
        self.closed = False

    def done(self, status, usage=None, *, deployment=None, price=None, images=0, characters=0,
             seconds=0.0, search_units=0, charge_failure=False, cache_hit=None):
        """The request reached an upstream and ended (response sent, stream finished or cut, upstream
        error) or was answered from the response cache (`cache_hit`): settle the reservations with the real usage and queue its usage record. `usage` is the
        OpenAI usage dict (for a cut stream: the tokens seen so far); `price` the serving deployment's
        prices.Price. Failed requests (status >= 400) cost 0, unless `charge_failure` (model answers were
        produced before a later step failed: an MCP tool loop). Returns the cost; never raises."""
        if self.closed:
            return 0.0
        self.closed = True
        try:
            cost = 0.0
            if (status < 400 or charge_failure) and price is not None:
                cost = prices.cost(price, usage, images=images, characters=characters, seconds=seconds,
                                    search_units=search_units)
            record = make_record(key_id=self.policy.key_id, model=self.model, deployment=deployment,
                                 endpoint=self.endpoint, status=status, usage=usage, spend=cost,
                                 latency_ms=int((time.monotonic() - self.started) * 1000),
                                 stream=self.stream, request_id=self.request_id, batch_id=self.batch_id,
                                 cache_hit=cache_hit)
            # unknown usage on a success keeps the token reservation; a failure used none
            known = usage is not None or status >= 400
            self.grant.finish(tokens=record["total_tokens"] if known else None, cost=cost)
            self.gate.writer.record(record)
            return cost
        except Exception:  # noqa: BLE001 - accounting must never fail a response
            logger.exception("usage accounting failed for request %s", self.request_id)
            return 0.0

    def abort(self):
        """The request never reached an upstream (refused or failed before): release, record nothing."""
        if not self.closed:
            self.closed = True
            self.grant.release()


class Gate:
    """Built once per process from a Limiter and a UsageWriter."""

    def __init__(self, limiter, writer):
        self.limiter, self.writer = limiter, writer

    def admit(self, policy, model, body, *, endpoint, stream=False, price=None, tokenizer_model=None,
              request_id=None, batch_id=None):
        """Check and reserve `policy`'s limits (None: the master key, never limited) for one request
        to public model `model`. Reserves the prompt tokens of `body` (counted with `tokenizer_model`'s
        tokenizer, default the public name) plus its max_tokens, and their cost at `price` (the model
        group's highest Price, or None). Raises RateLimited / BudgetExceeded (429 with headers incl.
        Retry-After) or LimiterUnavailable (503). `batch_id` marks the usage record of a batch's line."""
        policy = policy or Policy(None)     # the master key: recorded, never limited
        prompt = out = 0
        if policy.tpm is not None or policy.model_tpm or policy.max_budget is not None:
            prompt = tokens.count_prompt(body, tokenizer_model or model)
            out = tokens.max_output(body)
        cost = 0.0
        if price is not None and policy.max_budget is not None:
            cost = prices.estimate(price, prompt, out)
        grant = self.limiter.acquire(policy, model, tokens=prompt + out, cost=cost)
        return Ticket(self, grant, policy, model, endpoint, stream, request_id or uuid.uuid4().hex, batch_id)


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
