"""`key=value` overrides for a tree of config dataclasses, plus dict round trips and diffs.

    cfg = apply_overrides(cfg, ["arch.L_cycles=4", "lr=3e-4", "eval.select=vote"])

A dotted key names one field exactly; a key without a dot may name a leaf anywhere in the tree if
that name is unique. Values are parsed against the field's type annotation (the types config fields
have: bool, int, float, str, Literal[...] and `X | None`), and every dataclass on
the path is rebuilt with `dataclasses.replace`, so `__post_init__` validation runs on the result.
All mistakes raise `ConfigError` (a `puzzles.errors.UserError`) with one line naming the key.

`config_to_dict` / `config_from_dict` turn a config into plain python (lists, str, numbers) for
checkpoints and JSON and back; `diff_configs` lists the dotted keys where two configs differ.
Tests: python -m pytest -q tests/test_overrides.py
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Mapping, Sequence

from .errors import ConfigError


class _BadValue(Exception):
    """Internal: the text does not parse as the annotated type."""


class _Nested(dict):
    """Changes for a nested dataclass (kept apart from a leaf whose value happens to be a dict)."""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def _is_instance(x: Any) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def _init_fields(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init]


def _walk(cfg: Any, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """({dotted leaf path: annotation}, [dotted section paths]) for an instance tree."""
    leaves: dict[str, Any] = {}
    sections: list[str] = []
    for name, ann in _init_fields(type(cfg)):
        value, path = getattr(cfg, name), prefix + name
        if _is_instance(value):
            sections.append(path)
            sub_leaves, sub_sections = _walk(value, path + ".")
            leaves.update(sub_leaves)
            sections.extend(sub_sections)
        else:
            leaves[path] = ann
    return leaves, sections


def config_leaves(cfg: Any) -> dict[str, Any]:
    """{dotted path: current value} for every settable leaf (handy for `--help` and logging)."""
    leaves, _ = _walk(cfg)
    out = {}
    for path in leaves:
        obj = cfg
        for part in path.split("."):
            obj = getattr(obj, part)
        out[path] = obj
    return out


def _type_name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    return getattr(ann, "__name__", str(ann).replace("typing.", ""))


def _parse(text: str, ann: Any) -> Any:
    """Parse `text` as `ann`, or raise _BadValue."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse(text, arg)
            except _BadValue:
                pass
        raise _BadValue
    if origin is Literal:
        for choice in args:
            try:
                if _parse(text, type(choice)) == choice:
                    return choice
            except _BadValue:
                pass
        raise _BadValue
    if ann is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise _BadValue
    if ann in (int, float):
        try:
            return ann(text.strip())
        except ValueError:
            raise _BadValue from None
    if ann is str:
        return text
    raise _BadValue


def _resolve(key: str, leaves: dict[str, Any], sections: list[str]) -> str:
    if key in leaves:
        return key
    if key in sections:
        example = next(p for p in leaves if p.startswith(key + "."))
        raise ConfigError(f"config key '{key}' is a section, not a value; set one of its fields, e.g. '{example}'")
    if "." not in key:
        matches = [p for p in leaves if p.rsplit(".", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ConfigError(f"config key '{key}' is ambiguous; use the full name: {', '.join(matches)}")
    # Suggest by full path, and (for short keys) by leaf name mapped back to its full path.
    candidates = {p: p for p in leaves}
    if "." not in key:
        for p in leaves:
            candidates.setdefault(p.rsplit(".", 1)[-1], p)
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    if close:
        raise ConfigError(f"unknown config key '{key}'; did you mean '{candidates[close[0]]}'?")
    raise ConfigError(f"unknown config key '{key}'; valid keys: {', '.join(leaves)}")


def _rebuild(obj: Any, changes: _Nested) -> Any:
    kwargs = {name: _rebuild(getattr(obj, name), ch) if isinstance(ch, _Nested) else ch
              for name, ch in changes.items()}
    return dataclasses.replace(obj, **kwargs)


def apply_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    """Return a copy of `cfg` with every `key=value` applied (later ones win), validated once."""
    if not overrides:
        return cfg
    leaves, sections = _walk(cfg)
    changes = _Nested()
    for item in overrides:
        key, sep, text = item.removeprefix("--").partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key=value")
        path = _resolve(key, leaves, sections)
        try:
            value = _parse(text, leaves[path])
        except _BadValue:
            raise ConfigError(f"{path} expects {_type_name(leaves[path])}, got '{text}'") from None
        node = changes
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, _Nested())
        node[last] = value
    try:
        return _rebuild(cfg, changes)
    except (ValueError, TypeError) as err:
        # Name the keys the user set (not their values: a long command line made a huge line).
        keys = ", ".join(dict.fromkeys(item.removeprefix("--").partition("=")[0].strip() for item in overrides))
        keys = keys if len(keys) <= 200 else keys[:200] + "..."
        raise ConfigError(f"invalid config after setting {keys}: {err}") from None


def config_to_dict(cfg: Any) -> Any:
    """Plain python (dict / list / str / int / float / bool / None) for a config tree; loads with
    `torch.load(weights_only=True)` and dumps to JSON."""
    if _is_instance(cfg):
        return {name: config_to_dict(getattr(cfg, name)) for name, _ in _init_fields(type(cfg))}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def _from_plain(value: Any, ann: Any, path: str) -> Any:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return config_from_dict(ann, value, _prefix=path + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in args:
            if (isinstance(arg, type) and dataclasses.is_dataclass(arg)) == isinstance(value, Mapping):
                return _from_plain(value, arg, path)
        return value
    return value


def config_from_dict(cls: type, d: Mapping[str, Any], _prefix: str = "") -> Any:
    """Inverse of `config_to_dict`. Unknown keys are an error; missing keys take their defaults."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"config section '{_prefix.rstrip('.') or cls.__name__}' should be a dict, got {type(d).__name__}")
    fields = dict(_init_fields(cls))
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise ConfigError(f"stored config has unknown key(s) {', '.join(_prefix + k for k in unknown)} "
                          f"for {cls.__name__}")
    kwargs = {k: _from_plain(v, fields[k], _prefix + k) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"stored config does not fit {cls.__name__}: {err}") from None


def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    if _is_instance(x):
        x = config_to_dict(x)
    if not isinstance(x, Mapping):
        return {prefix.rstrip("."): x}
    out: dict[str, Any] = {}
    for k, v in x.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {prefix + k: config_to_dict(v)})
    return out


def diff_configs(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs (dataclasses or their dicts), including
    keys present in only one of them; in `a`'s order, then `b`'s extra keys."""
    fa, fb = _flatten(a), _flatten(b)
    missing = object()
    keys = list(fa) + [k for k in fb if k not in fa]
    return [k for k in keys if fa.get(k, missing) != fb.get(k, missing)]
