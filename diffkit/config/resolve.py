"""Resolve one run config from its layers, validated once.

Precedence, highest first: CLI flags > ``--config FILE`` (TOML, YAML or JSON) > environment
``DIFFKIT_<SECTION>__<FIELD>`` (e.g. ``DIFFKIT_TRAIN__LR=1e-3``) > the preset > the dataset's
shape > defaults.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from diffkit.config.run import PRESETS
from diffkit.errors import ConfigError

ENV_PREFIX = "DIFFKIT_"
UNION_TAGS = frozenset({"unet", "mlp"})
M = TypeVar("M", bound=BaseModel)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any], at: str = "") -> dict[str, Any]:
    """Recursively merge ``top`` over ``base`` (dicts merge, everything else replaces).

    A section on one side and a plain value on the other (``{"train": 5}`` over the
    preset's ``train`` section) is a ConfigError: replacing one by the other would drop
    the user's value without a word, or the whole section.
    """
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = deep_merge(old, value, f"{at}{key}.")
            continue
        if None not in (old, value) and isinstance(value, Mapping) != isinstance(old, Mapping):
            section, plain = (old, value) if isinstance(old, Mapping) else (value, old)
            example = f"{at}{key}.{next(iter(section), 'name')}"
            raise ConfigError(
                f"invalid {at}{key}: one layer sets it to {plain!r}, another to a section of "
                f"settings ({example}, ...); it must be one or the other"
            )
        out[key] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``; ``None`` values are dropped."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB): a real one is a few kilobytes."""
MAX_CONFIG_DEPTH = 64
"""The deepest nesting of sections and lists a config file or environment value may have
(a run config is three levels deep): deeper input is refused before it can exhaust the
parser's stack or the memory."""


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON mapping: at most :data:`MAX_CONFIG_BYTES`, nested at
    most :data:`MAX_CONFIG_DEPTH` levels, YAML without aliases (``*name``: a few of them
    expand to gigabytes); one-line ConfigError otherwise."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"config file must be .toml, .yaml or .json, not {path.suffix!r}")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB, the limit "
                              "for a config file")  # fmt: skip
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    too_deep = ConfigError(f"{path} nests deeper than {MAX_CONFIG_DEPTH} levels, the limit "
                           "for a config file")  # fmt: skip
    try:
        match suffix:
            case ".toml":
                data = tomllib.loads(text)  # recursive on inline arrays/tables: see below
            case ".yaml" | ".yml":
                data = yaml.load(text, _limited_yaml_loader(path)) or {}  # a SafeLoader
            case _:
                if json_depth(text) > MAX_CONFIG_DEPTH:
                    raise too_deep
                data = json.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    except RecursionError:  # tomllib's inline arrays and tables, nested thousands deep
        raise too_deep from None
    if _depth(data) > MAX_CONFIG_DEPTH:  # e.g. TOML's dotted keys, which nest iteratively
        raise too_deep
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def json_depth(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest, counted without parsing it
    (strings skipped), so that a hostile value is refused before the parser recurses."""
    depth = deepest = 0
    for token in _JSON_TOKENS.findall(text):
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


def _depth(data: Any) -> int:
    """The nesting depth of parsed data (dicts and lists), iteratively: a scalar is 0."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_CONFIG_DEPTH:  # past the limit the answer is known
                stack.extend((v, level + 1) for v in (node.values() if isinstance(node, dict)
                                                      else node))  # fmt: skip
    return deepest


def _limited_yaml_loader(path: Path) -> type:
    """A safe YAML loader that refuses aliases and nesting past :data:`MAX_CONFIG_DEPTH`
    while it composes (before any value is built). The pure-Python loader: libyaml's
    composes in C, out of reach of the check."""

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ConfigError(f"{path} uses a YAML alias (*name); config files may not "
                                  "(write the value out)")  # fmt: skip
            self.depth += 1
            if self.depth > MAX_CONFIG_DEPTH:
                raise ConfigError(f"{path} nests deeper than {MAX_CONFIG_DEPTH} levels, the "
                                  "limit for a config file")  # fmt: skip
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def env_layer(model: type[BaseModel], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect ``DIFFKIT_SECTION__FIELD`` variables that name a field of ``model``.

    Values are parsed as JSON where possible (numbers, lists, booleans) and left as strings
    otherwise; pydantic then validates them like any other layer.
    """
    environ = os.environ if environ is None else environ
    flat: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if not _is_field_path(model, path):
            continue
        if json_depth(raw) > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{key} nests deeper than {MAX_CONFIG_DEPTH} levels, the limit "
                              "for a config value")  # fmt: skip
        try:
            flat[".".join(path)] = json.loads(raw)
        except json.JSONDecodeError:
            flat[".".join(path)] = raw
    return nest(flat)


def _is_field_path(model: Any, path: list[str]) -> bool:
    """Whether ``path`` names a field; through unions (``UNetConfig | MLPConfig``) any
    member may have it."""
    if not path:
        return True
    fields = getattr(model, "model_fields", None)
    if fields is not None:
        return path[0] in fields and _is_field_path(fields[path[0]].annotation, path[1:])
    return any(_is_field_path(arg, path) for arg in typing.get_args(model))


def format_validation_error(exc: ValidationError) -> str:
    """One line naming every failing field, its reason and the offending value, joined by
    "; " (a user fixing a config file should not have to run it once per mistake)."""
    return "; ".join(_one_error(err) for err in exc.errors())


def _one_error(err: Any) -> str:
    # Drop the tags of tagged unions (model: unet | mlp), which are not config keys.
    where = ".".join(str(p) for p in err["loc"] if p not in UNION_TAGS) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    extra = (
        f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    )
    return f"invalid {where}: {msg}{extra}"


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def resolve_run_config(
    model: type[M],
    flags: Mapping[str, Any],
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    fixed: Mapping[str, Any] | None = None,
    fixed_by: str = "",
) -> M:
    """Merge the layers (see module doc) and validate once.

    ``flags`` maps dotted field paths to values; ``None`` means "not given". ``fixed`` holds
    values decided by something other than the user (a latent model's shape and data are
    its VAE's, named by ``fixed_by``): they replace the dataset-shape layer, sit on top of
    every layer, and a user value that contradicts one is an error. A prepared dataset's
    shape is read from its manifest here, before the config validates (which reads no file).
    """
    top = deep_merge(read_config_file(config_file) if config_file else {}, nest(flags))
    env = env_layer(model, environ)
    if "preset" in model.model_fields:
        preset = (fixed or {}).get(
            "preset", top.get("preset", env.get("preset", model.model_fields["preset"].default))
        )
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(f"invalid preset: {preset!r} is not one of {', '.join(PRESETS)}")
        # a preset's method-specific sections (a DDPM's diffusion) only reach the methods
        # that have them: `train rf --preset small` takes its network and training recipe
        base = {k: v for k, v in PRESETS[preset].items() if k in model.model_fields}
    else:  # a method with one fixed recipe (e.g. the classifier) keeps it in ``BASE``
        base = getattr(model, "BASE", {})
    layers = deep_merge(deep_merge(base, env), top)
    if fixed is not None:
        _check_fixed(deep_merge(env, top), fixed, fixed_by)
        return validate(model, _with_prepared_shape(deep_merge(layers, fixed)))
    layers = _with_prepared_shape(layers)
    data = validate(model, layers).data  # type: ignore[attr-defined]
    from diffkit.data.registry import image_shape

    channels, size = image_shape(data)
    given = layers.get("model", {})
    for key, want in (("in_channels", channels), ("image_size", size)):
        if key in given and given[key] != want:
            raise ConfigError(
                f"invalid model.{key}: {given[key]!r} does not match dataset "
                f"{data.dataset!r} ({want}); leave it unset to follow the data"
            )
    shape_layer = {"model": {"in_channels": channels, "image_size": size}}
    return validate(model, deep_merge(shape_layer, layers))


def _with_prepared_shape(layers: Mapping[str, Any]) -> dict[str, Any]:
    """``layers`` (a run config, before validation) whose data section, when it names a
    prepared dataset, carries its manifest's shape (read by the data layer)."""
    from diffkit.data.prepared import with_manifest_shape

    if "data" not in layers:
        return dict(layers)
    return {**layers, "data": with_manifest_shape(layers["data"])}


def _check_fixed(given: Mapping[str, Any], fixed: Mapping[str, Any], by: str, at: str = "") -> None:
    for key, want in fixed.items():
        if key not in given:
            continue
        if isinstance(want, Mapping) and isinstance(given[key], Mapping):
            _check_fixed(given[key], want, by, f"{at}{key}.")
        elif given[key] != want:
            raise ConfigError(
                f"invalid {at}{key}: {given[key]!r} does not match {by} ({want!r}); leave it unset"
            )


ENV_NOT_SETTINGS = frozenset({"DIFFKIT_TEST_DATA_DIR", "DIFFKIT_NO_ESTIMATE"})
"""``DIFFKIT_*`` variables that are not config: read by the test suite, and the time
estimate's switch (:mod:`diffkit.training.estimate`)."""


def env_names(models: typing.Iterable[Any], settings: Any = None) -> set[str]:
    """Every ``DIFFKIT_*`` name a config layer reads: ``DIFFKIT_SECTION__FIELD`` for each
    field path of ``models`` (through nested models and unions) and ``DIFFKIT_FIELD`` for
    each field of the ``settings`` class."""
    names = {f"{ENV_PREFIX}{f.upper()}" for f in getattr(settings, "model_fields", {})}
    for model in models:
        names |= {ENV_PREFIX + "__".join(p).upper() for p in _field_paths(model)}
    return names


def _field_paths(model: Any, prefix: tuple[str, ...] = ()) -> typing.Iterator[tuple[str, ...]]:
    fields = getattr(model, "model_fields", None)
    if fields is None:  # a union, Optional or a leaf
        for arg in typing.get_args(model):
            yield from _field_paths(arg, prefix)
        return
    for name, info in fields.items():
        yield (*prefix, name)
        yield from _field_paths(info.annotation, (*prefix, name))


def unknown_env(known: set[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """One line for each ``DIFFKIT_*`` variable that no config reads, with the closest
    known name: a mistyped ``DIFFKIT_TRAIN__EPOCS=3`` is otherwise ignored in silence."""
    import difflib

    environ = os.environ if environ is None else environ
    lines = []
    for key in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
        if key in known or key in ENV_NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{key} is not a diffkit setting{hint}; ignored")
    return lines


def to_toml(data: Mapping[str, Any]) -> str:
    """A config (``model_dump(mode="json")``) as TOML that :func:`read_config_file` reads
    back to the same config: scalars and lists first, then one ``[table]`` per section.
    TOML has no null: an unset field is written as a comment, and left out it takes the
    same value (every field that may be unset defaults to unset)."""
    return _toml_table(data, ()).lstrip("\n")


def _toml_table(data: Mapping[str, Any], path: tuple[str, ...]) -> str:
    lines = [f"\n[{'.'.join(path)}]"] if path else []
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for key, value in data.items():
        if key in tables:
            continue
        if value is None:
            lines.append(f"# {key} = (unset)")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n" if lines else ""
    for key, value in tables.items():
        text += _toml_table(value, (*path, _toml_key(key)))
    return text


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, list | tuple):
        if any(v is None or isinstance(v, Mapping) for v in value):
            raise ConfigError(f"cannot write {value!r} as TOML")
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} as TOML")
