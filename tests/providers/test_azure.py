"""Azure OpenAI adapter: deployment URLs, api-version, api-key header, Azure's stream quirks and errors."""
import orjson
import pytest
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import (GatewayError, UpstreamAuthFailed, UpstreamError, UpstreamRateLimited,
                             UpstreamRejected)
from deltallm.providers.azure import AzureProvider
from deltallm.providers.base import Call
from deltallm.router.deployment import Deployment

BASE = "https://contoso.openai.azure.com"
CHAT_URL = f"{BASE}/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
PARAMS = {"model": "azure/prod-4o", "api_base": BASE + "/", "api_key": "azure-key"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.1,
        "some_new_param": {"x": 1}}
FILTER = {"hate": {"filtered": False, "severity": "safe"}}


def deployment(**params):
    return Deployment("gpt-4o", dict(PARAMS, **params))


def completion(**extra):
    return dict({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
                 "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                              "message": {"role": "assistant", "content": "hi", "refusal": None},
                              "content_filter_results": FILTER}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER}]}, **extra)


def sse(*objs):
    return b"".join(b"data: " + orjson.dumps(o) + b"\n\n" for o in objs) + b"data: [DONE]\n\n"


def chunk(delta, finish=None, **extra):
    return dict({"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish,
                              "content_filter_results": {}}]}, **extra)


def test_registered_under_azure_prefix():
    assert type(deployment().adapter) is AzureProvider


@responses.activate
def test_chat_url_headers_and_body():
    responses.add(responses.POST, CHAT_URL, json=completion())
    result = deployment().adapter.chat(Call("req-1"), CHAT)
    ChatCompletion.model_validate(result)
    assert result["choices"][0]["message"]["content"] == "hi"
    request = responses.calls[0].request
    assert request.url == CHAT_URL
    assert request.headers["api-key"] == "azure-key"
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == dict(CHAT, model="prod-4o")


@responses.activate
def test_api_version_param_and_encoded_deployment():
    url = f"{BASE}/openai/deployments/my%20dep/chat/completions?api-version=2025-01-01-preview"
    responses.add(responses.POST, url, json=completion())
    deployment(model="azure/my dep", api_version="2025-01-01-preview",
               api_base=BASE + "/openai").adapter.chat(Call("req-1"), CHAT)
    assert responses.calls[0].request.url == url


@responses.activate
def test_chat_stream_drops_the_prompt_filter_chunk():
    prompt_filter = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                     "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER}]}
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    responses.add(responses.POST, CHAT_URL, content_type="text/event-stream", body=sse(
        prompt_filter, chunk({"role": "assistant", "content": ""}), chunk({"content": "hi"}),
        chunk({}, "stop"), dict(chunk({}), choices=[], usage=usage)))
    chunks = list(deployment().adapter.chat_stream(Call("req-1"), dict(CHAT, stream=True)))
    for item in chunks:
        ChatCompletionChunk.model_validate(item)
    assert len(chunks) == 4
    assert chunks[1]["choices"][0]["delta"] == {"content": "hi"}
    assert chunks[-1]["usage"] == usage
    request = responses.calls[0].request
    assert request.url == CHAT_URL and request.headers["api-key"] == "azure-key"
    assert "Authorization" not in request.headers
    assert request.headers["Accept"] == "text/event-stream"
    sent = orjson.loads(request.body)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


@responses.activate
def test_embeddings():
    url = f"{BASE}/openai/deployments/prod-4o/embeddings?api-version=2024-10-21"
    reply = {"object": "list", "model": "text-embedding-3-small",
             "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
             "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    responses.add(responses.POST, url, json=reply)
    result = deployment().adapter.post_json(Call("req-1"), "/embeddings",
                                            {"model": "emb", "input": "hi", "dimensions": 2})
    assert result == reply
    request = responses.calls[0].request
    assert request.url == url and request.headers["api-key"] == "azure-key"
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == {"model": "prod-4o", "input": "hi", "dimensions": 2}


@pytest.mark.parametrize("path", ["/images/generations", "/audio/speech", "/audio/transcriptions"])
def test_other_endpoints_use_the_deployment_url(path):
    assert deployment().adapter.url(path) == f"{BASE}/openai/deployments/prod-4o{path}?api-version=2024-10-21"


def test_api_base_is_required():
    with pytest.raises(GatewayError) as err:
        Deployment("gpt-4o", {"model": "azure/prod-4o", "api_key": "k"}).adapter
    assert err.value.code == "provider_misconfigured" and "api_base" in err.value.message


@responses.activate
def test_401_is_an_upstream_auth_failure():
    responses.add(responses.POST, CHAT_URL, status=401, json={"error": {
        "code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})
    with pytest.raises(UpstreamAuthFailed) as err:
        deployment().adapter.chat(Call("req-1"), CHAT)
    assert (err.value.status, err.value.type, err.value.code) == (502, "upstream_error", "upstream_auth_failed")
    assert "invalid subscription key" in err.value.upstream_message  # logged, never relayed
    assert "invalid subscription key" not in err.value.message


@responses.activate
def test_429_keeps_retry_after():
    responses.add(responses.POST, CHAT_URL, status=429, headers={"Retry-After": "7"}, json={"error": {
        "code": "429", "message": "Requests have exceeded the token rate limit. Please retry after 7 seconds."}})
    with pytest.raises(UpstreamRateLimited) as err:
        deployment().adapter.chat(Call("req-1"), CHAT)
    assert err.value.status == 429 and err.value.retryable
    assert err.value.headers == {"Retry-After": "7"}


@responses.activate
def test_content_filter_400_is_passed_through():
    responses.add(responses.POST, CHAT_URL, status=400, json={"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation",
                       "content_filter_result": {"violence": {"filtered": True, "severity": "high"}}}}})
    with pytest.raises(UpstreamRejected) as err:
        deployment().adapter.chat(Call("req-1"), CHAT)
    assert err.value.to_dict() == {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": "invalid_request_error", "param": "prompt", "code": "content_filter"}}
    assert err.value.status == 400 and not err.value.retryable


@responses.activate
def test_5xx_is_retryable():
    responses.add(responses.POST, CHAT_URL, status=503, json={"error": {"code": "503", "message": "busy"}})
    with pytest.raises(UpstreamError) as err:
        deployment().adapter.chat(Call("req-1"), CHAT)
    assert err.value.retryable and err.value.status == 502


# -- end to end against the fake Azure (tests/fakes/azure.py) in its own process ---------------
@pytest.fixture(scope="module")
def fake_upstream(upstream_url):
    return upstream_url


def test_fake_chat_stream_and_embeddings(fake_upstream):
    adapter = deployment(model="azure/gpt-4o-mini", api_base=fake_upstream, api_key="upstream-secret").adapter
    result = adapter.chat(Call("req-1"), CHAT)
    ChatCompletion.model_validate(result)
    assert result["choices"][0]["message"]["content"] == "echo: hello"
    chunks = list(adapter.chat_stream(Call("req-1"), CHAT))
    for item in chunks:
        ChatCompletionChunk.model_validate(item)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hello"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    vectors = adapter.post_json(Call("req-1"), "/embeddings", {"model": "e", "input": ["a", "b"]})
    assert [d["index"] for d in vectors["data"]] == [0, 1]


@pytest.mark.parametrize("version, usage", [("2024-02-01", False), ("2024-06-01", False),
                                            ("2024-09-01-preview", True), ("2024-10-21", True)])
def test_fake_stream_with_an_older_api_version(fake_upstream, version, usage):
    """api-versions before 2024-09-01 refuse stream_options, so the gateway does not add it there."""
    adapter = deployment(model="azure/gpt-4o-mini", api_base=fake_upstream, api_key="upstream-secret",
                         api_version=version).adapter
    chunks = list(adapter.chat_stream(Call("req-1"), CHAT))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hello"
    assert ("usage" in chunks[-1] and chunks[-1]["choices"] == []) is usage
    assert deployment(api_version=version, stream_usage=True).adapter.stream_usage  # config still decides


def test_fake_errors(fake_upstream):
    with pytest.raises(UpstreamAuthFailed):
        deployment(api_base=fake_upstream, api_key="wrong").adapter.chat(Call("req-1"), CHAT)
    adapter = deployment(api_base=fake_upstream, api_key="upstream-secret").adapter
    with pytest.raises(UpstreamRejected) as err:
        adapter.chat(Call("req-1"), {"messages": [{"role": "user", "content": "bad [[status:400]]"}]})
    assert err.value.code == "content_filter"
    with pytest.raises(UpstreamRateLimited) as err:
        adapter.chat(Call("req-1"), {"messages": [{"role": "user", "content": "slow [[status:429]]"}]})
    assert err.value.headers == {"Retry-After": "1"}
