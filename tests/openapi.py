"""Validate bodies against OpenAI's official OpenAPI component schemas (vendored under tests/reference/, MIT)."""
import functools
import json
import pathlib

SPEC = pathlib.Path(__file__).resolve().parent / "reference" / "openai-openapi.json"


def _nullable(node):
    """OpenAPI's `nullable: true` (which JSON Schema ignores) as an explicit `null` alternative."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


# Properties OpenAI's API returns as null that the component schemas do not declare nullable: the
# document's own Response example has `"user": null`, and a Response in response.created /
# response.in_progress events carries `"usage": null` (the openai SDK types both Optional).
RETURNED_NULL = {"Response": ("usage",), "ModelResponseProperties": ("user",)}


def _returned_null(components):
    for name, keys in RETURNED_NULL.items():
        schema = components["schemas"][name]
        for part in schema.get("allOf", [schema]):
            for key in keys:
                if key in part.get("properties", {}):
                    part["properties"][key] = {"anyOf": [part["properties"][key], {"type": "null"}]}
    return components


@functools.lru_cache(maxsize=None)
def _components():
    with SPEC.open(encoding="utf-8") as fh:
        return _returned_null(_nullable(json.load(fh)["components"]))


@functools.lru_cache(maxsize=None)
def _validator(name):
    from jsonschema import Draft202012Validator
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": _components()})


def check(name, body):
    """Assert `body` validates against components.schemas[name]."""
    validator = _validator(name)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
