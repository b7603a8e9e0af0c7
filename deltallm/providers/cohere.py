"""Cohere's v2 API: rerank (`/rerank`) and embeddings (`/embed`); api_base includes the version segment."""
from deltallm.errors import InvalidRequest
from deltallm.providers import rerank
from deltallm.providers.base import Provider, translated
from deltallm.providers.embedding_shapes import embedding_list, texts_of, vector
from deltallm.providers.native_embeddings import COHERE_INPUT_TYPES, refuse_others
from deltallm.providers.openai import decode_json
from deltallm.schemas.rerank import document_texts

MAX_TEXTS = 96  # Cohere's limit on the texts of one embed call: longer inputs are sent in parts
RERANK_EXTRA = ("priority", "relevant_spans")  # Cohere v2 rerank options passed on as sent


class CohereProvider(Provider):
    name = "cohere"
    default_api_base = "https://api.cohere.com/v2"

    def __init__(self, deployment):
        super().__init__(deployment)
        self.use_headers(Accept="application/json")

    def chat(self, call, body):
        raise self.unsupported("chat completions")

    def chat_stream(self, call, body):
        raise self.unsupported("chat completions")

    def post(self, call, path, payload):
        resp = self.send(call, self.api_base + path, payload, headers=self.headers)
        return decode_json(resp.content, self.name)

    def rerank(self, call, body):
        extra = rerank.passed_on(body, self.name)
        for field in extra:
            if field not in RERANK_EXTRA:
                raise rerank.not_offered(self.name, field)
        texts = document_texts(body)
        payload = dict(extra, model=self.deployment.model, query=body["query"], documents=texts)
        for field in ("top_n", "max_tokens_per_doc"):
            if body.get(field) is not None:
                payload[field] = body[field]
        data = self.post(call, "/rerank", payload)
        out, units = rerank.response(self.name, data, "cohere", body, texts, self.deployment.model)
        call.units["search_units"] = units
        return out

    def embeddings(self, call, body):
        texts = texts_of(body, self.name)
        input_type = body.get("input_type") or self.deployment.model_info.get("input_type") or "search_document"
        if input_type not in COHERE_INPUT_TYPES:
            raise InvalidRequest(f"Invalid value for 'input_type': must be one of {', '.join(COHERE_INPUT_TYPES)}",
                                 param="input_type")
        refuse_others(body, self.name, ("input_type", "truncate", "max_tokens", "priority"))
        extra = {k: body[k] for k in ("truncate", "max_tokens", "priority") if k in body}
        vectors, tokens = [], 0
        for start in range(0, len(texts), MAX_TEXTS):
            payload = dict(extra, model=self.deployment.model, texts=texts[start:start + MAX_TEXTS],
                           input_type=input_type, embedding_types=["float"])
            if body.get("dimensions") is not None:
                payload["output_dimension"] = body["dimensions"]
            data = self.post(call, "/embed", payload)
            part, used = translated(self.name, read_embed, data, len(payload["texts"]))
            vectors += part
            tokens += used
        return embedding_list(vectors, self.deployment.model, tokens, body)


def read_embed(data, count):
    """(float vectors, billed input tokens) of a v2 embed answer (`embeddings.float`)."""
    vectors = [vector(v) for v in data["embeddings"]["float"]]
    if len(vectors) != count:
        raise ValueError("wrong number of embeddings")
    billed = (data.get("meta") or {}).get("billed_units") or {}
    tokens = billed.get("input_tokens") or 0
    return vectors, int(tokens) if isinstance(tokens, (int, float)) and not isinstance(tokens, bool) else 0
