"""Embeddings for native APIs: the request's texts, and the OpenAI `list` built from float vectors."""
import base64
import struct

from deltallm.errors import InvalidRequest


def texts_of(body, provider):
    """The request's input as a list of strings; token arrays are a 400 (the API takes text only)."""
    value = body["input"]
    if isinstance(value, str):
        return [value]
    if all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest(f"Invalid value for 'input': the {provider} embeddings API takes text, not token "
                         "arrays", param="input")


def encoded(vector, encoding_format):
    """A float vector as the client asked: floats, or base64 of little-endian float32 (OpenAI's encoding)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embedding_list(vectors, model, prompt_tokens, body):
    """OpenAI's CreateEmbeddingResponse for `vectors` (lists of floats, in input order)."""
    fmt = body.get("encoding_format")
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encoded(v, fmt)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def vector(value):
    """A list of numbers as floats; anything else raises TypeError (the caller's 502)."""
    if not isinstance(value, list) or not value or any(isinstance(x, bool) or not isinstance(x, (int, float))
                                                     for x in value):
        raise TypeError("not a vector of numbers")
    return [float(x) for x in value]
