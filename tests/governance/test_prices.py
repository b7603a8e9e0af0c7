"""Prices: the bundled table, model_info overrides, cost from usage, unknown models cost 0 once-warned."""
import json
import logging

import pytest

from deltallm.governance import prices
from deltallm.governance.prices import Price, cost, estimate, price_for


def test_the_table_names_its_source_and_date_and_covers_every_family():
    doc = json.loads(prices.TABLE_PATH.read_text())
    assert doc["_taken"] and "model_prices_and_context_window.json" in doc["_source"]
    for model in ("openai/gpt-4o-mini", "azure/gpt-4o", "anthropic/claude-3-5-sonnet-20241022",
                  "gemini/gemini-2.5-flash", "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                  "mistral/mistral-large-latest", "groq/llama-3.3-70b-versatile", "cohere/command-r",
                  "bedrock/us.amazon.nova-pro-v1:0", "text-embedding-3-small"):
        assert price_for(model).known, model


def test_cost_of_chat_usage_with_cached_prompt_tokens():
    price = price_for("openai/gpt-4o-mini")
    usage = {"prompt_tokens": 1000, "completion_tokens": 200,
             "prompt_tokens_details": {"cached_tokens": 400}}
    assert cost(price, usage) == pytest.approx(600 * 0.15e-6 + 400 * 0.075e-6 + 200 * 0.6e-6)
    assert cost(price, {"input_tokens": 10, "output_tokens": 2}) == pytest.approx(10 * 0.15e-6 + 2 * 0.6e-6)


def test_model_info_overrides_field_by_field_and_base_model_prices_azure_deployments():
    price = price_for("azure/my-deployment", {"base_model": "gpt-4o", "output_cost_per_token": 1e-5})
    assert price.known and price.input == 2.5e-6 and price.output == 1e-5 and price.cached_input == 1.25e-6
    custom = price_for("openai/local-llama", {"input_cost_per_token": 0, "output_cost_per_token": 0})
    assert custom.known and cost(custom, {"prompt_tokens": 5}) == 0.0
    media = price_for("openai/x", {"output_cost_per_image": 0.04, "input_cost_per_second": 0.0001,
                                   "input_cost_per_character": 1.5e-5})
    assert cost(media, images=2, seconds=30, characters=1000) == pytest.approx(0.08 + 0.003 + 0.015)


def test_unknown_model_costs_nothing_and_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="deltallm.governance.prices")
    price = price_for("openai/never-heard-of-it")
    assert price == Price(name="openai/never-heard-of-it")
    assert cost(price, {"prompt_tokens": 100}) == 0.0 and cost(price, {"prompt_tokens": 1}) == 0.0
    assert len([r for r in caplog.records if "never-heard-of-it" in r.getMessage()]) == 1
    assert estimate(price, 100, 100) == 0.0


def test_estimate_reserves_prompt_and_max_output():
    price = price_for("gpt-4o")
    assert estimate(price, 1000, 500) == pytest.approx(1000 * 2.5e-6 + 500 * 1e-5)
