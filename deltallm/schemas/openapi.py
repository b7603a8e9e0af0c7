"""The OpenAPI 3.1 document of every API route, built once per app from the marshmallow request schemas
(apispec's marshmallow plugin), with the OpenAI error envelope as each operation's error response."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from deltallm import __version__
from deltallm.config import ModelEntrySchema
from deltallm.schemas import admin, chat, common, completions, embeddings, responses
from deltallm.schemas.admin import key_create, key_update
from deltallm.schemas.batches import batch_create
from deltallm.schemas.chat import chat_request
from deltallm.schemas.completions import completion_request
from deltallm.schemas.embeddings import SPEECH_FORMATS, embedding_request, image_request, speech_request
from deltallm.schemas.rerank import rerank_request
from deltallm.schemas.responses import responses_request

# How our strict fields look in JSON Schema; None: more than one JSON type is accepted (a string or
# an array of them, a string or an object ...), so the document does not narrow it.
FIELD_TYPES = {
    common.StrictBool: "boolean", common.StrictNumber: "number", common.StrictString: "string",
    common.StrictDict: "object", common.StrictList: "array", admin.Duration: "string",
    chat.StopField: None, chat.ToolChoiceField: None, responses.ToolChoiceField: None,
    responses.InputField: None, completions.PromptField: None, embeddings.EmbeddingInput: None,
    admin.StringList: None, admin.Timestamp: None,
}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
# /mcp answers protocol errors as JSON-RPC (MCP's transport), auth errors as the envelope
JSON_RPC = {"type": "object", "required": ["jsonrpc"], "properties": {"jsonrpc": {"const": "2.0"}}}
OBJECT = {"type": "object"}
JSON = {"application/json": {"schema": OBJECT}}
# a stream (`stream: true`): the schema is one server-sent event's (JSON data; a last `[DONE]` for chat)
SSE = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string"}, "data": {"type": "string"}}}}}


def answer(kind, *required):
    """A JSON answer whose `object` is `kind`, with the `required` fields (OpenAI's objects, ours alike)."""
    return {"application/json": {"schema": {"type": "object", "required": ["object", *required],
                                            "properties": {"object": {"const": kind}}}}}


LIST = answer("list", "data")
PAGED = answer("list", "data", "has_more")
FILE = answer("file", "id", "bytes", "created_at", "filename", "purpose")
BATCH = answer("batch", "id", "endpoint", "status", "input_file_id", "created_at", "request_counts")
PAGE = [("limit", {"type": "integer"}), ("after", {"type": "string"})]
AUDIO_FORM = {"type": "object", "required": ["file", "model"], "properties": {
    "file": {"type": "string", "contentMediaType": "application/octet-stream"}, "model": {"type": "string"},
    "language": {"type": "string"}, "prompt": {"type": "string"},
    "response_format": {"enum": ["json", "text", "srt", "verbose_json", "vtt"]}, "temperature": {"type": "number"}}}
FILE_FORM = {"type": "object", "required": ["file", "purpose"], "properties": {
    "file": {"type": "string", "contentMediaType": "application/octet-stream"},
    "purpose": {"enum": ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]},
    "expires_after[anchor]": {"const": "created_at"},
    "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000}}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}

# Flask endpoint -> (summary, request body, query parameters, success status, success content)
OPERATIONS = {
    "chat.chat_completions": ("Create a chat completion", chat_request, [], 200,
                              {**answer("chat.completion", "id", "created", "model", "choices"), **SSE}),
    "completions.create_completion": ("Create a (legacy) completion", completion_request, [], 200,
                                      {**answer("text_completion", "id", "created", "model", "choices"), **SSE}),
    "responses.create_response": ("Create a response", responses_request, [], 200,
                                  {**answer("response", "id", "created_at", "status", "output"), **SSE}),
    "embeddings.create_embeddings": ("Create embeddings", embedding_request, [], 200, answer("list", "data", "model")),
    "embeddings.generate_images": ("Generate images", image_request, [], 200, JSON),
    "audio.speech": ("Generate speech", speech_request, [], 200,
                     {media: {"schema": {"type": "string"}} for media in sorted(set(SPEECH_FORMATS.values()))}),
    "audio.transcriptions": ("Transcribe audio", AUDIO_FORM, [], 200, {**JSON, **TEXT}),
    "audio.translations": ("Translate audio into English", AUDIO_FORM, [], 200, {**JSON, **TEXT}),
    "rerank.rerank": ("Rerank documents", rerank_request, [], 200, JSON),
    "models.list_models": ("List the models this key may call", None, [], 200, LIST),
    "models.retrieve_model": ("Retrieve a model", None, [], 200, answer("model", "id", "created", "owned_by")),
    "key_info.key_info": ("The calling key's limits and spend", None, [], 200, JSON),
    "files.upload": ("Upload a file", FILE_FORM, [], 200, FILE),
    "files.list_files": ("List files", None, [("purpose", {"type": "string"}), ("limit", {"type": "integer"}),
                                             ("after", {"type": "string"}), ("order", {"enum": ["asc", "desc"]})],
                         200, PAGED),
    "files.retrieve": ("Retrieve a file", None, [], 200, FILE),
    "files.content": ("A file's content", None, [], 200,
                      {"application/jsonl": {"schema": {"type": "string"}},
                       "application/octet-stream": {"schema": {"type": "string"}}}),
    "files.delete": ("Delete a file", None, [], 200, answer("file", "id", "deleted")),
    "batches.create": ("Create a batch", batch_create, [], 200, BATCH),
    "batches.list_batches": ("List batches", None, PAGE, 200, PAGED),
    "batches.retrieve": ("Retrieve a batch", None, [], 200, BATCH),
    "batches.cancel": ("Cancel a batch", None, [], 200, BATCH),
    "mcp.post": ("MCP gateway (JSON-RPC 2.0, Streamable HTTP)", JSON_RPC, [], 200, JSON),
    "mcp.end_session": ("End an MCP session", None, [], 200, JSON),
    "health.liveliness": ("Liveness", None, [], 200, JSON),
    "health.readiness": ("Readiness: the database and Redis answer", None, [], 200, JSON),
    "admin.create": ("Create a virtual key", key_create, [], 201, JSON),
    "admin.list_keys": ("List virtual keys", None, PAGE, 200, PAGED),
    "admin.read": ("Read a virtual key", None, [], 200, JSON),
    "admin.update": ("Change a key's limits", key_update, [], 200, JSON),
    "admin.revoke": ("Revoke a key", None, [], 200, JSON),
    "admin.regenerate": ("Replace a key's secret", None, [], 200, JSON),
    "admin.spend": ("Spend from the usage log", None,
                    [(name, {"type": "string"}) for name in ("key_id", "model", "start", "end")]
                    + [("group_by", {"enum": ["day", "key", "model"]})], 200,
                  answer("spend", "start", "end", "total", "data")),
    "admin.usage": ("Usage records, newest first", None,
                    [("key_id", {"type": "string"}), ("model", {"type": "string"})] + PAGE, 200, PAGED),
    "admin_models.list_deployments": ("List deployments and their health", None, [], 200, LIST),
    "admin_models.add_deployment": ("Add a runtime deployment (one model_list entry)", ModelEntrySchema, [],
                                    201, JSON),
    "admin_models.delete_deployment": ("Remove a runtime deployment", None, [], 200, JSON),
    "admin_mcp.list_servers": ("List MCP servers", None, [], 200, JSON),
    "admin_mcp.add_server": ("Register an MCP server", {"type": "object", "required": ["server_key", "url"],
                             "properties": {"server_key": {"type": "string"}, "url": {"type": "string"},
                                            "auth": OBJECT, "description": {"type": "string"}}}, [], 201, JSON),
    "admin_mcp.read_server": ("Read an MCP server", None, [], 200, JSON),
    "admin_mcp.server_tools": ("An MCP server's tools", None, [], 200, JSON),
    "admin_mcp.delete_server": ("Remove an MCP server", None, [], 200, JSON),
    "openapi.document": ("This document", None, [], 200, JSON),
}
OPEN = {"health.liveliness", "health.readiness", "openapi.document"}
MULTIPART = {"audio.transcriptions", "audio.translations", "files.upload"}
UNDOCUMENTED = {"static"}  # Flask's own static route (the app has none: see create_app)
PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def build(app):
    """The document for the routes `app` has registered (files and batches only when enabled)."""
    ma = MarshmallowPlugin()
    spec = APISpec(title="DeltaLLM", version=__version__, openapi_version="3.1.0", plugins=[ma],
                   info={"description": "OpenAI-compatible LLM gateway"})
    for field, kind in FIELD_TYPES.items():
        ma.map_to_openapi_type(field, kind, None)
    ma.converter.add_attribute_function(strict_bounds)
    spec.components.schema("Error", ERROR)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in UNDOCUMENTED:
            continue
        summary, body, query, status, content = OPERATIONS[rule.endpoint]
        path = PARAM.sub(r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            spec.path(path=path, operations={method.lower(): operation(
                rule, method, path, summary, body, query, status, content)})
    return spec.to_dict()


def operation(rule, method, path, summary, body, query, status, content):
    op = {"operationId": f"{method.lower()}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
          "summary": summary, "responses": {str(status): {"description": "OK", "content": content},
                                            "default": {"description": "Error (the OpenAI error envelope)",
                                                        "content": {"application/json": {"schema": "Error"}}}}}
    if rule.endpoint == "mcp.post":
        op["responses"]["202"] = {"description": "A notification was accepted"}
    if rule.rule == "/mcp":
        op["responses"]["default"]["content"]["application/json"]["schema"] = {
            "oneOf": [{"$ref": "#/components/schemas/Error"}, JSON_RPC]}
    if rule.endpoint in OPEN:
        op["security"] = []
    else:
        op["security"] = [{"bearer": []}]
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in PARAM.findall(rule.rule)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in query]
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        media = "multipart/form-data" if rule.endpoint in MULTIPART else "application/json"
        op["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
    return op


def strict_bounds(converter, field, ret, **kwargs):
    """Bounds and shapes our strict fields check (bound to apispec's converter; its own validators it reads itself)."""
    out = {}
    if isinstance(field, common.StrictNumber):
        if field.integer:
            out["type"] = ["integer", "null"] if isinstance(ret.get("type"), list) else "integer"
        if field.minimum is not None:
            out["minimum"] = field.minimum
        if field.maximum is not None:
            out["maximum"] = field.maximum
    elif isinstance(field, common.Choice):
        out["enum"] = list(field.choices) + ([None] if field.allow_none else [])
    elif type(field) is common.StrictString or isinstance(field, admin.Duration):
        if field.non_empty:
            out["minLength"] = 1
        if field.max_length is not None:
            out["maxLength"] = field.max_length
    elif isinstance(field, common.StrictList) and field.non_empty:
        out["minItems"] = 1
    return out
