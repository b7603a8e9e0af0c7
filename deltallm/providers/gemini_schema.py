"""JSON Schema (OpenAI's dialect) to Gemini's Schema object, the OpenAPI 3.0 subset it enforces."""
import orjson

from deltallm.errors import InvalidRequest

# Keywords of Gemini's Schema object (an OpenAPI 3.0 subset) copied as they are.
SCHEMA_KEYS = ("title", "description", "required", "minItems", "maxItems", "minProperties",
               "maxProperties", "minLength", "maxLength", "pattern", "minimum", "maximum",
               "default", "example", "propertyOrdering")
# `format` values Gemini accepts per type; any other format is dropped rather than refused.
FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"},
           "INTEGER": {"int32", "int64"}}


def to_schema(schema, param, *, ordered=False):
    """A JSON Schema (OpenAI's dialect) as Gemini's Schema object, an OpenAPI 3.0 subset it enforces.

    `$ref`s are inlined from `$defs`/`definitions` (recursion is refused); `type: [T, "null"]` and
    null `anyOf`/`oneOf` branches become `nullable`; `oneOf` becomes `anyOf`; `allOf` members merge;
    `const` becomes a one-value `enum`, typed after its values when no `type` is given (a number
    const must not come back as a string); enums stay on strings only; types are upper-cased; other
    `format`s and keywords (`additionalProperties`, `$schema`, `strict`, `patternProperties`, `not`,
    `exclusiveMinimum` ...) are dropped. `ordered` adds `propertyOrdering` (Gemini sorts keys otherwise).
    """
    defs = {name: value for key in ("definitions", "$defs") if isinstance(schema.get(key), dict)
            for name, value in schema[key].items() if isinstance(value, dict)}

    def convert(node, seen):
        if not isinstance(node, dict):
            return {}
        malformed = shape_error(node)
        if malformed:
            raise InvalidRequest(f"Invalid JSON Schema: {malformed}.", param=param)
        if isinstance(node.get("$ref"), str):
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen or name not in defs:
                raise InvalidRequest(f"schema reference {node['$ref']!r} is recursive or unknown", param=param)
            return convert({**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, seen + (name,))
        if node.get("allOf"):
            out = {}
            for part in node["allOf"] + [{k: v for k, v in node.items() if k != "allOf"}]:
                for key, value in convert(part, seen).items():
                    if key == "properties":
                        out.setdefault(key, {}).update(value)
                    elif key in ("required", "propertyOrdering"):
                        out[key] = list(dict.fromkeys(out.get(key, []) + (value or [])))
                    else:
                        out[key] = value
            return out
        out = {}
        types = node.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        nullable = "null" in types or node.get("nullable") is True
        types = [t for t in types if t != "null"]
        branches = node.get("anyOf") or node.get("oneOf")
        if not types and not branches:  # Gemini wants a type: infer the obvious one
            types = [value_type(node)] if "enum" in node or "const" in node else ["object"] \
                if "properties" in node else ["array"] if "items" in node else []
        if isinstance(branches, list):
            kept = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            nullable = nullable or len(kept) < len(branches)
            converted = [convert(b, seen) for b in kept]
            out.update(converted[0] if len(converted) == 1 else {"anyOf": converted} if converted else {})
        if types:
            out.update({"type": types[0].upper()} if len(types) == 1
                       else {"anyOf": [{"type": t.upper()} for t in types]})
        enum = [node["const"]] if "const" in node else node.get("enum")
        if isinstance(enum, list):
            nullable = nullable or None in enum
            if out.get("type") == "STRING":  # Gemini allows enum on strings only
                out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in enum if v is not None]
            else:
                out.update(value_bounds(node, [v for v in enum if v is not None], out.get("type")))
        if isinstance(node.get("properties"), dict):
            out["properties"] = {k: convert(v, seen) for k, v in node["properties"].items()}
            if ordered and len(out["properties"]) > 1 and "propertyOrdering" not in node:
                out["propertyOrdering"] = list(out["properties"])
        if isinstance(node.get("items"), dict):
            out["items"] = convert(node["items"], seen)
        if node.get("format") in FORMATS.get(out.get("type"), ()):
            out["format"] = node["format"]
        out.update((key, node[key]) for key in SCHEMA_KEYS if key in node and key not in out)
        if nullable:
            out["nullable"] = True
        return out

    return convert(schema, ())


def value_bounds(node, values, kind):
    """What keeps a number/boolean enum or const (Gemini takes `enum` on strings only): numbers within
    `minimum`/`maximum` (exact for a single value), and the allowed values in the description."""
    out = {}
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if kind in ("INTEGER", "NUMBER") and numbers and len(numbers) == len(values):
        out.update((key, bound(numbers)) for key, bound in (("minimum", min), ("maximum", max)) if key not in node)
    if values:
        allowed = ", ".join(orjson.dumps(v).decode() for v in values)
        out["description"] = (node["description"] + " " if node.get("description") else "") + f"One of: {allowed}."
    return out


def value_type(node):
    """The JSON type of an untyped `const`/`enum` node's values: boolean, integer or number when all
    values are, else string."""
    values = [node["const"]] if "const" in node else node.get("enum")
    values = [v for v in values if v is not None] if isinstance(values, list) else []
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def shape_error(node):
    """What makes a schema node unreadable (keywords of the wrong JSON type), or None."""
    types = node.get("type")
    if not (types is None or isinstance(types, str)
            or isinstance(types, list) and all(isinstance(t, str) for t in types)):
        return "`type` must be a string or an array of strings"
    for key in ("allOf", "anyOf", "oneOf", "enum"):
        if node.get(key) is not None and not isinstance(node[key], list):
            return f"`{key}` must be an array"
    for key in ("required", "propertyOrdering"):
        if node.get(key) is not None and not (isinstance(node[key], list)
                                              and all(isinstance(k, str) for k in node[key])):
            return f"`{key}` must be an array of strings"
    if node.get("format") is not None and not isinstance(node["format"], str):
        return "`format` must be a string"
    return None
