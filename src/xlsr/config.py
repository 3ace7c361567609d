"""The one configuration system: dataclasses, filled from YAML, then from command-line overrides.

Order of precedence (later wins): dataclass defaults < YAML files (in the order given) < overrides.
Nested dataclass fields and dict fields take dotted keys (`model.mask_prob=0.5`). Every value is
coerced to the field's annotated type, so `lr: 5e-4` in YAML (a string to YAML 1.1) and `--lr 5e-4`
on the command line both become floats. An unknown key is an XlsrError naming the key and its source.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import io
import json
import math
import tokenize
import types
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xlsr.atomic import write_text
from xlsr.errors import XlsrError

T = TypeVar("T")


# A config is a page of settings (the shipped recipes are 2-3 KB): far larger files, or aliases that expand to far
# more values, are no config (PyYAML's pure-Python parser needs minutes for 100 MB; nine nested aliases of nine
# values each expand to 9^9 values once a list setting is read).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build Python objects) that refuses a key given twice in one mapping
    (two `lr:` lines: PyYAML would keep the last silently); a key merged in with `<<:` may be given again."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be given again
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML (or JSON) mapping; a missing, unparsable, oversized or non-mapping file, a key given twice or
    aliases that expand past MAX_CONFIG_VALUES are one XlsrError line."""
    path = Path(path)
    if path.is_dir():
        raise XlsrError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise XlsrError(f"{path}: config file not found")
    if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
        raise XlsrError(f"{path}: {size:,} bytes, more than a config file holds (at most {MAX_CONFIG_BYTES:,})")
    try:
        data = _parse_text(path.read_text(encoding="utf-8"))
        too_many = _expanded_values(data, {}) > MAX_CONFIG_VALUES
    except UnicodeDecodeError:
        raise XlsrError(f"{path}: not a YAML text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise XlsrError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    except RecursionError:  # nested thousands deep, or an alias that holds itself
        raise XlsrError(f"{path}: nested too deeply to be a config") from None
    if too_many:
        raise XlsrError(f"{path}: its aliases (*name) expand to more than {MAX_CONFIG_VALUES:,} values")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XlsrError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def _parse_text(text: str) -> Any:
    """A config file's data: YAML, or JSON where YAML refuses it (JSON may indent with tabs, YAML may not)."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        if not text.lstrip().startswith("{"):
            raise
        try:
            return json.loads(text, object_pairs_hook=_json_mapping)
        except ValueError:  # no JSON either: YAML's reason is the one to show
            pass
        raise


def _json_mapping(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object, refusing a key given twice as the YAML loader does (json keeps the last silently)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice")
        out[key] = value
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where: its message's first line is often only what it was doing ("while
    scanning for the next token"), the reason and the line on the lines below."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return str(exc).splitlines()[0] if str(exc) else "invalid YAML"
    if "\\t" in problem or "tab character" in problem:
        problem += "; use spaces, not tabs"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _expanded_values(node: Any, sizes: dict[int, int]) -> int:
    """How many values `node` holds with every alias written out, each shared node counted once in `sizes`; a node
    that holds itself counts as too many."""
    if not isinstance(node, dict | list):
        return 1
    if id(node) not in sizes:
        sizes[id(node)] = MAX_CONFIG_VALUES + 1  # while it is counted: reached again from inside, it holds itself
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        sizes[id(node)] = 1 + sum(_expanded_values(item, sizes) for item in items)
    return sizes[id(node)]


def load_config(cls: type[T], yaml_path: str | Path | list | None = None, overrides: dict | None = None) -> T:
    """Build `cls` from its defaults, then YAML file(s), then `overrides` (dotted keys allowed)."""
    values: dict[str, Any] = {}
    paths = [] if yaml_path is None else (list(yaml_path) if isinstance(yaml_path, list | tuple) else [yaml_path])
    for p in paths:
        _merge(values, _flatten(read_yaml(p), source=str(p)), cls, source=str(p))
    _merge(values, _flatten(overrides or {}, source="command line"), cls, source="command line")
    return _build(cls, values)


def config_to_dict(obj: Any) -> Any:
    """A dataclass (nested ones too) as plain YAML/JSON data: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_config(obj: Any, path: str | Path, header: str = "") -> None:
    """Write a config as YAML (atomically: temp file, then rename), `header` above it as a comment."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text(path, comment + yaml.safe_dump(config_to_dict(obj), sort_keys=False))


def parse_override_args(tokens: list[str]) -> dict[str, str]:
    """`["--lr", "1e-3", "--model.mask_prob=0.5"]` -> {"lr": "1e-3", "model.mask_prob": "0.5"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise XlsrError(f"{tok}: unexpected argument (config keys are given as --key value)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and not _is_number(tokens[i + 1])):
                raise XlsrError(f"--{key}: missing value")
            i += 1
            value = tokens[i]
        out[key.replace("-", "_")] = value
        i += 1
    return out


def coerce_fields(cls: type, values: dict, where: str = "") -> dict:
    """`values` typed as the fields of dataclass `cls`; an unknown key or a bad value is one XlsrError line."""
    hints = _hints(cls)
    out = {}
    for key, raw in values.items():
        if key not in hints:
            raise XlsrError(f"{where}{key}: unknown config key for {cls.__name__}")
        out[key] = _coerce(raw, hints[key], f"{where}{key}")
    return out


# --- internals -----------------------------------------------------------------------------------

def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _flatten(d: dict, prefix: str = "", source: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys, so YAML sections and CLI overrides merge the same way; a key given both
    in a section and dotted (`model: {mask_prob: ..}` and `model.mask_prob: ..`) is given twice."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        flat = _flatten(v, key + ".", source) if isinstance(v, dict) and v else {key: v}
        if twice := next((name for name in flat if name in out), None):
            raise XlsrError(f"{source}: key '{twice}' given twice (in a section and as a dotted key)")
        out.update(flat)
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _merge(values: dict, flat: dict, cls: type, source: str, prefix: str = "") -> None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for key, raw in flat.items():
        head, _, rest = key.partition(".")
        if head not in fields:
            hint = _did_you_mean(head, fields)
            raise XlsrError(f"{source}: unknown config key '{prefix}{key}'" + (f" ({hint})" if hint else ""))
        typ = hints[head]
        if rest:
            sub = _nested_dataclass(typ)
            if sub is not None:
                inner = values.setdefault(head, {})
                if not isinstance(inner, dict):
                    inner = values[head] = {}
                _merge(inner, {rest: raw}, sub, source, f"{prefix}{head}.")
            elif _origin(typ) is dict:
                # Free-form dict sections (e.g. model overrides) are checked by their consumer.
                inner = values.setdefault(head, {})
                inner[rest] = _parse_scalar(raw)
            else:
                raise XlsrError(f"{source}: unknown config key '{prefix}{key}' ('{head}' has no sub-keys)")
        else:
            sub = _nested_dataclass(typ)
            if sub is not None and isinstance(raw, dict):
                _merge(values.setdefault(head, {}), _flatten(raw), sub, source, f"{prefix}{head}.")
            elif _origin(typ) is dict:
                if not isinstance(raw, dict):
                    raise XlsrError(f"{source}: {prefix}{key}: expected a section of settings (key: value lines), "
                                    f"got {raw!r}")
                values.setdefault(head, {}).update(raw)
            else:
                values[head] = _coerce(raw, typ, f"{source}: {prefix}{key}")


def _did_you_mean(key: str, known) -> str:
    """"did you mean 'lr'?" for a key a typo away from a known one; "" when none is near."""
    near = difflib.get_close_matches(key, list(known), n=1)
    return f"did you mean '{near[0]}'?" if near else ""


def _build(cls: type[T], values: dict) -> T:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        sub = _nested_dataclass(hints[f.name])
        if sub is not None and isinstance(values[f.name], dict):
            kwargs[f.name] = _build(sub, values[f.name])
        else:
            kwargs[f.name] = values[f.name]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise XlsrError(f"{cls.__name__}: {exc}") from None


def _origin(typ: Any) -> Any:
    return typing.get_origin(typ) or typ


def _nested_dataclass(typ: Any) -> type | None:
    for t in _union_args(typ):
        if dataclasses.is_dataclass(t):
            return t
    return None


def _union_args(typ: Any) -> tuple:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return typing.get_args(typ)
    return (typ,)


def _parse_scalar(raw: Any) -> Any:
    """A command-line string read as YAML would read it (numbers, booleans, null, lists)."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return raw  # YAML reads "" as null: `--out ""` would be "null is not allowed", and a `str | None` field unset
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _is_number(value):
        return float(value)  # YAML 1.1 reads 5e-4 as a string
    return value


def _is_infinite(value: Any) -> bool:
    """Whether `value` is ±inf or an int beyond a float's range (10**400: as infinite once a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isinf(float(value))
    except OverflowError:
        return True


def _coerce(raw: Any, typ: Any, where: str) -> Any:
    """Convert `raw` to the annotated type; a value that does not fit is one XlsrError line."""
    value = _parse_scalar(raw)
    args = _union_args(typ)
    if isinstance(value, str) and value.lower() == "none" and type(None) in args:
        value = None  # `--freeze-updates none`: Python's word for YAML's null, where a field may be unset
    if value is None:
        if type(None) in args or typ is Any:
            return None
        raise XlsrError(f"{where}: null is not allowed (expected {_type_name(typ)})")
    if isinstance(value, str) and not value.strip() and str in args:
        # no str setting takes "": an empty --out would write into the current folder, an empty path or name
        # would fail later blaming something else
        raise XlsrError(f"{where}: empty value (expected {_type_name(typ)})")
    if float in args and _is_infinite(value):
        # inf passes every `> 0` check and fails many updates later (a NaN loss, a NaN weight) blaming the data;
        # nan fails every comparison and is refused as no float at all, below
        raise XlsrError(f"{where}: must be a finite number, got {raw!r}")
    errors = []
    for t in args:
        if t is type(None):
            continue
        try:
            return _coerce_one(value, t)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise XlsrError(f"{where}: cannot use {raw!r} as {_type_name(typ)}")


def _coerce_one(value: Any, t: Any) -> Any:
    origin = typing.get_origin(t)
    if t is Any:
        return value
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise ValueError("not a boolean")
    if t is int:
        if isinstance(value, bool):
            raise ValueError("bool is not int")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    if t is float:
        if isinstance(value, bool):
            raise ValueError("bool is not float")
        try:
            number = float(value)
        except OverflowError:  # an int too big for a float (10**400): as infinite as inf
            raise ValueError("not a finite number") from None
        if not math.isfinite(number):  # nan or inf inside a list or tuple (the whole value is checked in _coerce)
            raise ValueError("not a finite number")
        return number
    if t is str:
        if isinstance(value, dict | list):
            raise ValueError("not a string")
        return str(value)
    if origin is typing.Literal:
        if value in typing.get_args(t):
            return value
        raise ValueError(f"not one of {typing.get_args(t)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ValueError("not a list")
        inner = typing.get_args(t)
        if origin is tuple and inner and inner[-1] is not Ellipsis:
            if len(inner) != len(value):
                raise ValueError(f"expected {len(inner)} values")
            return tuple(_coerce_one(_parse_scalar(v), it) for v, it in zip(inner and value, inner))
        it = inner[0] if inner else Any
        items = [_coerce_one(_parse_scalar(v), it) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError("not a mapping")
        return dict(value)
    return value


def _type_name(typ: Any) -> str:
    """A type in the words of the values it takes: `'a' | 'b'`, `int | None`, `tuple of 3 floats`, `list of str`."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if typ is type(None):
        return "None"
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(set(args)) == 1:  # (0.9, 0.98): "tuple of 2 floats", as many as the command line must give
            return f"tuple of {len(args)} {_type_name(args[0])}s"
        return f"tuple of ({', '.join(_type_name(a) for a in args)})"
    if origin in (list, tuple) and args:
        return f"{origin.__name__} of {_type_name(args[0])}"
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


# --- command line ----------------------------------------------------------------------------------

_DEST = "config:"


def add_config_arguments(parser, cls: type, *, prefix: str = "", skip: tuple[str, ...] = (),
                         defaults: dict[str, Any] | None = None, other_default: str = "") -> None:
    """Add `--field` (and `--field-with-dashes`) for every field of dataclass `cls` to an argparse parser.

    Values stay strings (default: not given) and are typed later by `load_config`, so the command line
    overrides YAML exactly like an `overrides` dict. `prefix="model."` adds `--model.<field>` options.
    Each option's help is the field's source comment (see `field_comments`), then its type and default.
    The help shows `cls`'s own field defaults, unless a run starts from other values: then `defaults` gives
    the values shown ({field: value}) and `other_default` words the default of every field not in it
    ("the preset's"), so that the help never shows a number the run does not use. The parser then takes no
    abbreviated options: a key is given whole, as in YAML.
    """
    if isinstance(parser, argparse.ArgumentParser):  # (a group's options are its parser's)
        # a key is matched whole, as in a YAML file: argparse's abbreviations would read `--final-lr 1e-5` as
        # --final-lr-scale 1e-5 (a scale where a rate was meant), `--model.num-codevectors 640` as the per-group count
        parser.allow_abbrev = False
    hints = _hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or _nested_dataclass(hints[f.name]) is not None or _origin(hints[f.name]) is dict:
            continue
        key = prefix + f.name
        names = [f"--{key}"]
        if "_" in key:
            names.append(f"--{key.replace('_', '-')}")
        if defaults is None:
            default = f.default if f.default is not dataclasses.MISSING else None
        else:
            default = defaults.get(f.name)
        shown = "" if default in (None, "") or isinstance(default, dict | list) else f"default {_cli_form(default)}"
        if defaults is not None and f.name not in defaults and other_default:
            shown = f"default: {other_default}"
        typ, comment = hints[f.name], comments.get(f.name, "")
        # beside a comment, a Literal's type would repeat the metavar's {choice,...}
        kind = "" if comment and typing.get_origin(typ) is typing.Literal else _type_name(typ)
        parser.add_argument(*names, dest=_DEST + key, default=argparse.SUPPRESS, metavar=_metavar(typ),
                            help=_option_help(comment, kind, shown))


def _cli_form(value: Any) -> str:
    """A default as the command line takes it: a tuple comma-separated (`0.9,0.98`, not `(0.9, 0.98)`, which
    --adam-betas refuses)."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def field_comments(cls: type) -> dict[str, str]:
    """{field name: its comment in the source} for dataclass `cls`; a field without one is left out.

    A field's comment is its trailing `# ...` (on any line of its definition), continued by comment lines right
    below whose `#` stands in the same column; failing that, the comment lines directly above it (no blank line
    between). A `# --- title` line heads a section: it and the comment lines under it belong to no field. An
    inherited field's comment is read from the class that defines it: the nearest in the MRO that gives it a
    comment (a subclass that only changes a default keeps the base's words). Where the source cannot be read (a
    frozen app) the dict is empty, and the help shows types and defaults only.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(_own_field_comments(klass))
    return {name: text for name, text in out.items() if name in names}


def _option_help(comment: str, kind: str, shown: str) -> str:
    """`comment (kind, shown)`, or `kind (shown)` without a comment; `%` escaped for argparse's formatting."""
    if comment:
        tail = ", ".join(part for part in (kind, shown) if part)
        text = f"{comment} ({tail})" if tail else comment
    else:
        text = f"{kind} ({shown})" if shown else kind
    return text.replace("%", "%%")


_PRAGMA = ("noqa", "type:", "fmt:", "pragma:")  # tool directives, not words for a reader


@functools.cache
def _own_field_comments(klass: type) -> dict[str, str]:
    """The comments of the fields that `klass` itself annotates, read from its source by the rule of
    `field_comments`; {} for a class that is no dataclass or whose source cannot be read."""
    if not dataclasses.is_dataclass(klass):
        return {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(klass)).readline))
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}
    comments: dict[str, list[str]] = {}
    depth, body = 0, None  # indentation depth now, and that of the class body
    above: list[str] = []  # comment lines since the last statement or blank line
    statement: list[tokenize.TokenInfo] = []  # the logical line being read (a field may span several lines)
    continued: tuple[str, int] | None = None  # (field, column of its trailing '#') that lines below may continue
    section = False  # reading a `# --- title` block
    for tok in tokens:
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif body is None:
            if tok.type == tokenize.NAME and tok.string == "class":
                body = depth + 1
        elif statement:
            if tok.type == tokenize.NEWLINE:
                continued = _read_statement(statement, depth == body, above, comments)
                above, statement = [], []
            else:
                statement.append(tok)
        elif tok.type == tokenize.COMMENT:  # a line holding only a comment
            text = tok.string.lstrip("#").strip()
            if continued is not None and tok.start[1] == continued[1]:
                comments[continued[0]].append(text)
            else:
                continued = None
                section = section or text.startswith("---")
                above = [] if section else [*above, text]
        elif tok.type == tokenize.NL:
            if not tok.line.strip():  # a blank line ends a continuation, a block above and a section's title
                above, continued, section = [], None, False
        elif tok.type != tokenize.ENDMARKER:
            statement, section = [tok], False
    return {name: " ".join(lines) for name, lines in comments.items() if any(lines)}


def _read_statement(statement: list, in_body: bool, above: list[str], comments: dict) -> tuple[str, int] | None:
    """Record the comment of a field statement (`name: type = ...`) of the class body in `comments`; return
    (field, column of its trailing comment) when comment lines below it may continue that comment."""
    code = [t for t in statement if t.type not in (tokenize.COMMENT, tokenize.NL)]
    if not (in_body and len(code) > 1 and code[0].type == tokenize.NAME and code[1].string == ":"):
        return None
    trailing = [t for t in statement if t.type == tokenize.COMMENT
                and not t.string.lstrip("#").strip().startswith(_PRAGMA)]
    name = code[0].string
    if trailing:
        comments[name] = [t.string.lstrip("#").strip() for t in trailing]
        return name, trailing[-1].start[1]
    comments[name] = list(above)
    return None


def collect_overrides(args) -> dict[str, str]:
    """The config options actually given on the command line, as {dotted key: string}."""
    return {k[len(_DEST):]: v for k, v in vars(args).items() if k.startswith(_DEST)}


def set_override(args, key: str, value: str) -> None:
    """Record `--key value` in parsed `args` as if it had been given on the command line."""
    setattr(args, _DEST + key, value)


def _metavar(typ: Any) -> str:
    args = [a for a in _union_args(typ) if a is not type(None)]
    t = args[0] if args else typ
    if typing.get_origin(t) is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(t)) + "}"
    if typing.get_origin(t) is tuple and typing.get_args(t) and typing.get_args(t)[-1] is not Ellipsis:
        return ",".join("ABCDEFGH"[: len(typing.get_args(t))])  # as many as it takes: A,B for Adam's betas
    if typing.get_origin(t) in (list, tuple):
        inner = typing.get_args(t)[0] if typing.get_args(t) else None
        if typing.get_origin(inner) is tuple:  # rows in brackets, as the command line takes them: [[512,10,5],...]
            return "[[" + _metavar(inner) + "],...]"
        return "A,B,..."
    return {bool: "BOOL", int: "N", float: "X", str: "S"}.get(t, "V")
