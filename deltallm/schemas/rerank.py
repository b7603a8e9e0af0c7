"""The rerank request schema (Cohere/Jina shape) and the document texts a reranker scores."""
from marshmallow import ValidationError

from deltallm.errors import InvalidRequest
from deltallm.schemas.common import FlatSchema, StrictBool, StrictList, StrictNumber, StrictString


def check_document(index, item):
    if isinstance(item, str):
        return
    if not isinstance(item, dict):
        raise ValidationError(f"item {index}: must be a string or an object with a `text` field")


def check_field_name(index, item):
    if not isinstance(item, str) or not item:
        raise ValidationError(f"item {index}: must be a non-empty string")


class RerankRequestSchema(FlatSchema):
    model = StrictString(required=True, non_empty=True)
    query = StrictString(required=True, non_empty=True)
    documents = StrictList(required=True, non_empty=True, check=check_document)
    top_n = StrictNumber(minimum=1, integer=True, allow_none=True)
    return_documents = StrictBool(allow_none=True)
    max_tokens_per_doc = StrictNumber(minimum=1, integer=True, allow_none=True)
    rank_fields = StrictList(non_empty=True, check=check_field_name, allow_none=True)


rerank_request = RerankRequestSchema()


def document_texts(body):
    """One string per document: a string as it is, an object's `text`, or with `rank_fields` its named
    fields as `name: value` lines in that order (what Cohere's v2 API asks for instead of objects)."""
    fields = body.get("rank_fields")
    texts = []
    for i, doc in enumerate(body["documents"]):
        if isinstance(doc, str):
            texts.append(doc)
            continue
        names = fields or ["text"]
        missing = [name for name in names if not scalar(doc.get(name))]
        if missing:
            raise InvalidRequest(f"Invalid value for 'documents[{i}]': the object has no text field "
                                 f"'{missing[0]}' to rank by", param=f"documents[{i}]")
        texts.append(str(doc["text"]) if not fields else "\n".join(f"{name}: {doc[name]}" for name in names))
    return texts


def scalar(value):
    return isinstance(value, str) or isinstance(value, (int, float)) and not isinstance(value, bool)


def too_many(body, limit):
    if len(body["documents"]) > limit:
        raise InvalidRequest(f"Invalid value for 'documents': at most {limit} documents may be reranked at once "
                             f"(got {len(body['documents'])})", param="documents")
