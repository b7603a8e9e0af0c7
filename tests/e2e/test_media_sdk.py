"""Embeddings, images and audio with the openai SDK, through gunicorn, to the OpenAI and Azure fakes."""
import io

import openai
import pytest


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure", "mocky"])
def test_embeddings(client, model):
    result = client.embeddings.create(model=model, input=["one", "two"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 1 for d in result.data)
    # the SDK asks for base64 by default and decodes it; an explicit float list works too
    floats = client.embeddings.create(model=model, input="one", encoding_format="float")
    assert isinstance(floats.data[0].embedding[0], float)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure"])
def test_images(client, model):
    result = client.images.generate(model=model, prompt="a lighthouse", n=2, response_format="b64_json")
    assert len(result.data) == 2 and result.data[0].b64_json == "aW1hZ2U="


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure"])
def test_speech_and_transcription(client, model):
    with client.audio.speech.with_streaming_response.create(model=model, voice="alloy", input="Hello there",
                                                            response_format="wav") as resp:
        assert resp.headers["content-type"] == "audio/wav"
        audio = b"".join(resp.iter_bytes())
    assert audio.startswith(b"wav:alloy:Hello there|") and len(audio) > 8000
    text = client.audio.transcriptions.create(model=model, file=("speech.wav", io.BytesIO(audio), "audio/wav"))
    assert text.text == f"heard {len(audio)} bytes of speech.wav as {'gpt-4o-mini' if model != 'azure' else 'gpt4o-deploy'}"
    plain = client.audio.transcriptions.create(model=model, file=("speech.wav", io.BytesIO(audio)),
                                               response_format="text")
    assert "heard" in plain


def test_unsupported_endpoint_for_provider(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="claude", input="x")
    assert info.value.body["code"] == "unsupported_model"
