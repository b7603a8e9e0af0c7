"""Embedding requests and answers of the native APIs: Gemini's batchEmbedContents and Bedrock's
InvokeModel bodies for Titan and Cohere embed models."""
from deltallm.errors import InvalidRequest
from deltallm.providers.embedding_shapes import vector

GEMINI_TASKS = ("RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
                "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
# the OpenAI fields every native API here takes care of (`user` has no counterpart: it is not sent)
OPENAI_FIELDS = ("model", "input", "encoding_format", "dimensions", "user")


def refuse_others(body, provider, allowed=()):
    """Fields the native API has no place for are a 400 (never silently dropped)."""
    for field in body:
        if field not in OPENAI_FIELDS and field not in allowed:
            raise InvalidRequest(f"'{field}' is not offered by the {provider} embeddings API", param=field)


def gemini_request(resource, texts, body, model_info):
    refuse_others(body, "gemini", ("task_type",))
    task = body.get("task_type") or model_info.get("input_type")
    if task is not None and task not in GEMINI_TASKS:
        raise InvalidRequest(f"Invalid value for 'task_type': must be one of {', '.join(GEMINI_TASKS)}",
                             param="task_type")
    requests = []
    for text in texts:
        one = {"model": resource, "content": {"parts": [{"text": text}]}}
        if task:
            one["taskType"] = task
        if body.get("dimensions") is not None:
            one["outputDimensionality"] = body["dimensions"]
        requests.append(one)
    return {"requests": requests}


def gemini_vectors(data, count):
    vectors = [vector(item["values"]) for item in data["embeddings"]]
    if len(vectors) != count:
        raise ValueError("wrong number of embeddings")
    return vectors


def bedrock_kind(model):
    """'titan' or 'cohere' for a Bedrock embedding model id (a region prefix allowed), else None."""
    name = model.split(".", 1)[1] if model.split(".", 1)[0] in ("us", "eu", "apac", "global") else model
    if name.startswith("amazon.titan-embed"):
        return "titan"
    if name.startswith("cohere.embed"):
        return "cohere"
    return None


def titan_request(model, text, body):
    """One text per call: Titan embeds a single inputText. Only v2 takes `dimensions` (and `normalize`)."""
    refuse_others(body, "bedrock titan", ("normalize",))
    payload = {"inputText": text}
    v1 = "titan-embed-text-v1" in model
    for field, name in (("dimensions", "dimensions"), ("normalize", "normalize")):
        if body.get(field) is not None:
            if v1:
                raise InvalidRequest(f"'{field}' is not offered by {model}", param=field)
            payload[name] = body[field]
    return payload


def titan_vector(data):
    """(vector, input tokens) of a Titan answer."""
    tokens = data.get("inputTextTokenCount") or 0
    return vector(data["embedding"]), int(tokens) if isinstance(tokens, int) else 0


def bedrock_cohere_request(texts, body, model_info):
    refuse_others(body, "bedrock cohere", ("input_type", "truncate"))
    if body.get("dimensions") is not None:
        raise InvalidRequest("'dimensions' is not offered by Cohere embed models on Bedrock", param="dimensions")
    input_type = body.get("input_type") or model_info.get("input_type") or "search_document"
    if input_type not in COHERE_INPUT_TYPES:
        raise InvalidRequest(f"Invalid value for 'input_type': must be one of {', '.join(COHERE_INPUT_TYPES)}",
                             param="input_type")
    payload = {"texts": texts, "input_type": input_type}
    if body.get("truncate") is not None:
        payload["truncate"] = body["truncate"]
    return payload


def bedrock_cohere_vectors(data, count):
    """`embeddings` is a list of vectors (embeddings_floats), or {"float": [...]} (embeddings_by_type)."""
    embeddings = data["embeddings"]
    if isinstance(embeddings, dict):
        embeddings = embeddings["float"]
    vectors = [vector(v) for v in embeddings]
    if len(vectors) != count:
        raise ValueError("wrong number of embeddings")
    return vectors
