"""The request-path facade: admit reserves, done settles and records, abort records nothing."""
import pytest

from deltallm import db, models
from deltallm.errors import RateLimited
from deltallm.governance import prices, reports
from deltallm.governance.gate import Gate
from deltallm.governance.limits import BudgetExceeded, Limiter, Policy
from deltallm.governance.usage import UsageWriter

BODY = {"model": "gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": "hello world"}]}


@pytest.fixture
def gate(tmp_path, clock):
    handle = db.init(str(tmp_path / "gate.db"))
    handle.connect_params["check_same_thread"] = False
    models.migrate()
    writer = UsageWriter(interval=30)
    yield Gate(Limiter(None, seed=reports.spend_since, clock=clock), writer)
    writer.close()
    handle.close_all()


def test_tokens_reserved_from_the_body_then_replaced_by_the_real_usage(gate):
    policy = Policy("k1", tpm=200)
    ticket = gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions")
    # 9 prompt tokens + max_tokens reserved
    assert ticket.headers["x-ratelimit-remaining-tokens"] == str(200 - (9 + 50))
    price = prices.price_for("openai/gpt-4o")
    cost = ticket.done(200, {"prompt_tokens": 10, "completion_tokens": 5}, deployment="d1", price=price)
    assert cost == pytest.approx(10 * 2.5e-6 + 5 * 1e-5)
    ticket.done(200, {"prompt_tokens": 999})          # second call: no effect
    nxt = gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions")
    assert nxt.headers["x-ratelimit-remaining-tokens"] == str(200 - 15 - 59)
    nxt.abort()
    gate.writer.drain()
    [record] = reports.usage_list()["data"]           # abort wrote nothing
    assert (record["key_id"], record["model"], record["deployment"], record["status"], record["total_tokens"],
            record["stream"]) == ("k1", "gpt-4o", "d1", 200, 15, False)
    assert record["spend"] == pytest.approx(cost)


def test_failures_cost_nothing_and_are_recorded_and_the_master_key_is_unlimited(gate):
    ticket = gate.admit(None, "gpt-4o", BODY, endpoint="/v1/chat/completions", stream=True)
    assert ticket.headers == {}
    assert ticket.done(502, None, deployment="d1", price=prices.price_for("gpt-4o")) == 0.0
    gate.writer.drain()
    [record] = reports.usage_list()["data"]
    assert (record["key_id"], record["status"], record["spend"], record["stream"]) == (None, 502, 0.0, True)


def test_budget_reserves_the_estimated_cost_and_spend_equals_the_records(gate, clock):
    price = prices.price_for("gpt-4o")               # 9 + 50 tokens: 9 * 2.5e-6 + 50 * 1e-5 = 0.0005225
    policy = Policy("k2", max_budget=0.001, budget_duration="1d")
    first = gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions", price=price)
    second = gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions", price=price)
    with pytest.raises(BudgetExceeded):               # 0.00105 held in flight
        gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions", price=price)
    first.done(200, {"prompt_tokens": 10, "completion_tokens": 2}, price=price)
    second.done(200, {"prompt_tokens": 10, "completion_tokens": 2}, price=price)
    gate.admit(policy, "gpt-4o", BODY, endpoint="/v1/chat/completions", price=price).abort()
    gate.writer.drain()
    assert gate.limiter.spend(policy)[0] == pytest.approx(reports.spend_report(key_id="k2")["total"]["spend"])


def test_rate_limited_requests_write_no_record(gate):
    policy = Policy("k3", rpm=1)
    gate.admit(policy, "m", BODY, endpoint="/v1/chat/completions").done(200, {"prompt_tokens": 1})
    with pytest.raises(RateLimited):
        gate.admit(policy, "m", BODY, endpoint="/v1/chat/completions")
    gate.writer.drain()
    assert len(reports.usage_list()["data"]) == 1


def test_highest_price_of_a_group():
    group = [prices.price_for("gpt-4o-mini"), prices.price_for("gpt-4o"), prices.price_for("openai/unknown")]
    top = prices.highest(group)
    assert (top.input, top.output) == (2.5e-6, 1e-5)
    assert prices.highest([prices.price_for("openai/unknown")]) is None
