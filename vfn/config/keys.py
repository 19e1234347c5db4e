"""The one walker of a pydantic schema, for every spec the platform reads (experiments, sweeps).

Dotted keys (`optim.lr`) are found, set and reported here, and a `ValidationError` becomes one
`ConfigError` line that names the dotted key, with the closest valid key for a typo and the other
section for a key put in the wrong one. Nothing here knows a particular schema.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vfn.errors import ConfigError

Schema = type[BaseModel]


def section_of(annotation: Any) -> Schema | None:
    """The pydantic model an annotation holds (`Section`, `Section | None`, `dict[str, Section]`)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def walk(schema: Schema, loc: tuple | list) -> list[tuple[str, Schema | None]]:
    """(name, section it opens, None for a value) for each part of `loc` that the schema knows, plus
    the first unknown one; a key of a mapping field (`space.optim.lr`) opens the mapping's value section."""
    out: list[tuple[str, Schema | None]] = []
    current: Schema | None = schema
    mapping = False
    for part in map(str, loc):
        if mapping:
            out.append((part, current))
            mapping = False
            continue
        if current is None:  # past a value (a list index, a union member)
            break
        if part not in current.model_fields:
            out.append((part, None))
            break
        annotation = current.model_fields[part].annotation
        mapping = typing.get_origin(annotation) is dict
        current = section_of(annotation)
        out.append((part, current))
    return out


def section_at(schema: Schema, loc: tuple | list) -> Schema | None:
    """The section a location names (`("optim",)` -> OptimSection), None where it is a value."""
    if not loc:
        return schema
    steps = walk(schema, loc)
    return steps[-1][1] if len(steps) == len(loc) else None


def field_loc(schema: Schema, loc: tuple) -> tuple[str, ...]:
    """An error location cut to field names (pydantic appends union members and list indices)."""
    out: list[str] = []
    for part, section in walk(schema, loc):
        out.append(part)
        if section is None:
            break
    return tuple(out)


def unknown_key(schema: Schema, prefix: list[str], name: str) -> str:
    """'unknown key X (did you mean Y?)': the closest key of that section, or the section that has it."""
    where = ".".join([*prefix, name])
    section = section_at(schema, prefix)
    valid = list(section.model_fields) if section is not None else []
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if not close and not prefix:  # a key put in the wrong section: look for it elsewhere
        for other, field in schema.model_fields.items():
            sub = section_of(field.annotation)
            if sub is not None and name in sub.model_fields:
                return f"unknown key '{where}' (did you mean '{other}.{name}'?)"
    if close:
        return f"unknown key '{where}' (did you mean '{'.'.join([*prefix, close[0]])}'?)"
    return f"unknown key '{where}'" + (f" (valid: {', '.join(valid)})" if valid else "")


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`key=value` strings -> (key, YAML value) pairs."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.05)")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value  # a plain string such as a path with ':' in it
        out.append((key.strip(), parsed))
    return out


def set_dotted(schema: Schema, raw: dict, key: str, value: Any, free: tuple[str, ...] = ("tags",)) -> None:
    """Set `raw[a][b] = value` for `key` 'a.b', checking each name against the schema; `free`
    fields are mappings of any keys (e.g. `tracking.tags.team`)."""
    node, section = raw, schema
    parts = key.split(".")
    for i, part in enumerate(parts):
        if section is not None and part not in section.model_fields:
            raise ConfigError(unknown_key(schema, parts[:i], part))
        if i == len(parts) - 1:
            node[part] = value
            return
        sub = section_of(section.model_fields[part].annotation) if section is not None else None
        if sub is None and part not in free:
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a section: cannot set {key}")
        section = sub
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a section: cannot set {key}")


def check(schema: Schema, raw: dict[str, Any], source: str):
    """`schema.model_validate(raw)`; the first problem becomes one ConfigError line naming the key."""
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {error_line(schema, e)}") from None


def error_line(schema: Schema, e: ValidationError) -> str:
    errors = e.errors(include_url=False)
    err = errors[0]
    loc = field_loc(schema, err["loc"])
    if err["type"] == "extra_forbidden":
        return unknown_key(schema, list(loc[:-1]), loc[-1])
    same = [x for x in errors if field_loc(schema, x["loc"]) == loc]  # a union: one error per member
    text = " or ".join(dict.fromkeys(x["msg"].removeprefix("Value error, ") for x in same))
    section = section_at(schema, loc)
    first = re.split(r"[ =(]", text, maxsplit=1)[0]
    if section is not None and first in section.model_fields:  # a cross-field check names its key
        loc, text = (*loc, first), text[len(first):].lstrip(" =")
    given = err.get("input")
    shown = "" if isinstance(given, dict) or err["type"] == "value_error" else f" (got {given!r})"
    rest = len(errors) - len(same)
    more = f" [+{rest} more]" if rest else ""
    key = f"{'.'.join(loc)}: " if loc else ""
    return f"{key}{text}{shown}{more}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> dotted keys (MLflow params, sweeps, diffs)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class KeyDoc(typing.NamedTuple):
    """One documented key of a schema: what the configuration reference shows."""
    key: str
    type: str
    default: str
    bounds: str
    description: str


BOUND_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=", "max_length": "length <="}


def key_docs(schema: Schema, prefix: str = "") -> list[KeyDoc]:
    """Every key of `schema`, sections opened in place (`optim.lr`), in declaration order: its type,
    default, bounds and the field's description (the configuration reference is built from this)."""
    out: list[KeyDoc] = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        section = section_of(field.annotation)
        if section is not None and typing.get_origin(field.annotation) is not dict:
            out += key_docs(section, f"{key}.")
            continue
        out.append(KeyDoc(key, type_name(field.annotation), default_text(field), bounds_text(field.metadata),
                          field.description or ""))
    return out


def type_name(annotation: Any) -> str:
    """`int | None`, `list[int]`, `'segment' | 'dense'`: an annotation as a reader writes it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def bounds_text(metadata: list) -> str:
    parts = []
    for item in metadata:
        for attr, symbol in BOUND_SYMBOLS.items():
            if getattr(item, attr, None) is not None:
                parts.append(f"{symbol} {getattr(item, attr)}")
    return ", ".join(parts)
