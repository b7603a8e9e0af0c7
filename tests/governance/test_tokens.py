"""Offline token counts: tiktoken encodings from vendored files, chat framing, the size cap, fallbacks."""
import hashlib

import pytest

from deltallm.governance import tokens


def test_vendored_encodings_match_tiktoken_and_load_offline():
    o200k, cl100k = tokens.encoding("o200k_base"), tokens.encoding("cl100k_base")
    assert o200k.encode_ordinary("hello world") == [24912, 2375]
    assert cl100k.encode_ordinary("hello world") == [15339, 1917]
    raw = (tokens.DATA / "o200k_base.tiktoken").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == tokens.ENCODINGS["o200k_base"][2]
    assert (tokens.DATA / "LICENSE-tiktoken").read_text().startswith("MIT License")


@pytest.mark.parametrize("model,name", [("gpt-4o", "o200k_base"), ("openai/gpt-4o-mini", "o200k_base"),
                                        ("o3-mini", "o200k_base"), ("gpt-4.1-nano", "o200k_base"),
                                        ("azure/gpt-4", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base"),
                                        ("text-embedding-3-small", "cl100k_base"),
                                        ("claude-3-5-sonnet", None), ("gemini/gemini-2.5-pro", None),
                                        ("omni-moderation", None)])
def test_families(model, name):
    assert tokens.encoding_name_for(model) == name


def test_chat_prompt_count_matches_openai_framing():
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                            {"role": "user", "content": "hello world"}]}
    assert tokens.count_prompt(body) == 19      # what OpenAI reports as prompt_tokens for this body


def test_other_bodies():
    parts = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert tokens.count_prompt(parts) == 3 + 3 + 1 + 2 + tokens.IMAGE_TOKENS
    assert tokens.count_prompt({"model": "text-embedding-3-small", "input": ["hello world", "hello"]}) == 3
    assert tokens.count_prompt({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]}) == 4
    assert tokens.count_prompt({"model": "gpt-3.5-turbo-instruct", "prompt": "hello world"}) == 2
    responses = {"model": "gpt-4o", "instructions": "hello world",
                 "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello world"}]}]}
    assert tokens.count_prompt(responses) == 2 + 3 + 2
    assert tokens.count_prompt({"model": "gpt-4o", "input": "hello world"}) == 2


def test_other_families_are_estimated_from_characters():
    body = {"model": "anthropic/claude-3-5-sonnet", "messages": [{"role": "user", "content": "x" * 400}]}
    assert tokens.count_prompt(body) == 3 + 3 + 101    # ceil((4 + 400) / 4)


def test_max_output():
    assert tokens.max_output({"max_tokens": 100}) == 100
    assert tokens.max_output({"max_completion_tokens": 50, "max_tokens": 100, "n": 2}) == 100
    assert tokens.max_output({"max_output_tokens": 7}) == 7
    assert tokens.max_output({}) == 0 and tokens.max_output({"max_tokens": None}) == 0


def test_huge_prompts_are_capped_not_tokenized_whole(monkeypatch):
    real = tokens.encoding("o200k_base")
    text = "The quick brown fox jumps over the lazy dog. " * 100_000     # 4.5 MB
    exact = len(real.encode_ordinary(text))
    seen = []

    class Recording:
        def encode_ordinary(self, piece):
            seen.append(len(piece))
            return real.encode_ordinary(piece)
    monkeypatch.setattr(tokens, "encoding", lambda name: Recording())
    count = tokens.count_prompt({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    assert sum(seen) <= tokens.MAX_EXACT_CHARS          # the rest is extrapolated, not tokenized
    assert abs(count - exact) / exact < 0.02            # from the ratio measured on the head


def test_a_corrupt_rank_file_is_refused_and_counts_fall_back_to_estimates(tmp_path, monkeypatch, caplog):
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setattr(tokens, "DATA", tmp_path)
    tokens.encoding.cache_clear()
    try:
        assert tokens.encoding("o200k_base") is None and "sha256" in caplog.text
        assert tokens.count_text("x" * 40, "gpt-4o") == 10
    finally:
        tokens.encoding.cache_clear()


def test_repeated_texts_are_counted_once_and_alike(monkeypatch):
    """A conversation's earlier turns and a system prompt come back with every request: their counts
    are remembered (by hash, not text), and a remembered count equals a fresh one."""
    monkeypatch.setattr(tokens, "COUNTED", {})
    enc = tokens.encoding("o200k_base")
    calls = []
    real = enc.encode_ordinary

    class Spy:
        def encode_ordinary(self, text):
            calls.append(text)
            return real(text)
    history = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "héllo wörld " * 50}]
    body = {"model": "gpt-4o", "messages": history}
    fresh = tokens.count_prompt(body)
    monkeypatch.setattr(tokens, "encoding", lambda name: Spy())
    assert tokens.count_prompt(body) == fresh and calls == []  # every text was remembered
    longer = {"model": "gpt-4o", "messages": history + [{"role": "user", "content": "and one more"}]}
    tokens.count_prompt(longer)
    assert calls == ["and one more"]  # only the new turn is tokenized
    assert tokens.count_prompt({"model": "gpt-4o", "messages": [{"role": "user", "content": "and one mor"}]}) > 0
    assert "and one mor" in calls  # a different text of another length is not mistaken for it


def test_the_remembered_counts_are_bounded(monkeypatch):
    monkeypatch.setattr(tokens, "COUNTED", {})
    monkeypatch.setattr(tokens, "MAX_COUNTED", 10)
    for i in range(25):
        tokens.count_texts([f"text number {i}"], "gpt-4o")
    assert len(tokens.COUNTED) <= 10
