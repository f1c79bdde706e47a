"""One loader for every settings tree: the exporter's configuration (YAML file, environment, flags)
and the alert settings (YAML or Jsonnet).

A settings tree is a dataclass whose defaults are the documented values. Plain data from a file is
merged over it key by key; text from the environment or a flag is parsed into the field's type.
Every problem is one `ConfigError` line, `SOURCE: key.path: problem`:

    devflow-monitor.yml: colectors: unknown key (did you mean 'collectors'?)
    devflow-monitor.yml: devflow.port: expected an integer, got str 'three thousand'
    override.yml: alerts.DevFlowProcessDown.for: 'soon' is not a duration like 30s, 5m, 1h or 2d

Field types, from the annotations: bool, int, float, str, `str | None` (null or empty text unsets
it), list[str] (comma-separated as text), a nested dataclass, and dict[str, dataclass] whose keys
the defaults fix (like the alerts). Numbers must be finite and not negative; a number field named
`*_seconds` also takes a duration (`5m`), one named `*_bytes` also a size (`64MiB`). Text must be
encodable as UTF-8 and free of NUL characters, since it ends up in paths, patterns and files.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from pathlib import Path

import yaml

# Prometheus' duration syntax, the one parser of this project: 1y2w3d4h5m6s7ms, each part optional, in order.
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?",
                       re.ASCII)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1)
# The longest duration a settings file may give: rule windows, `for` and Alertmanager intervals beyond a year
# are mistakes, and past about 292 years Prometheus' own duration type overflows.
MAX_DURATION, MAX_DURATION_TEXT = 366 * 86400, "366d"
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kMGT]B|[KMGT]iB|B)?", re.ASCII)
_SIZE_UNITS = {None: 1, "B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
               "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


class ConfigError(Exception):
    """A configuration problem in one line, phrased for the person who wrote the file."""


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as "1h30m" or "500ms" (an int unless milliseconds make a
    fraction); raises ConfigError."""
    match = _DURATION.fullmatch(duration) if isinstance(duration, str) else None
    if not duration or not match:
        raise ConfigError(f"{describe(duration, kind=False)} is not a duration like 30s, 5m, 1h or 2d")
    *parts, millis = match.groups()
    whole = sum(int(part or 0) * unit for part, unit in zip(parts, _DURATION_UNITS))
    return whole + int(millis) / 1000 if millis and int(millis) % 1000 else whole + int(millis or 0) // 1000


def size(text: str) -> float:
    """Bytes in a size such as 512KiB, 64MiB or 1GB; raises ConfigError."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ConfigError(f"{describe(text, kind=False)} is not a size like 512KiB, 64MiB or 1GB")
    return float(match[1]) * _SIZE_UNITS[match[2]]


def check_duration(text: str, where: str) -> float:
    """`seconds(text)`, at most MAX_DURATION, with `where` ("SOURCE: key.path") in front of the error."""
    try:
        duration = seconds(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if duration > MAX_DURATION:
        raise ConfigError(f"{where}: must be between 0s and {MAX_DURATION_TEXT}, got {describe(text, kind=False)}")
    return duration


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently, so
    the first setting would look set and be ignored). Keys merged in with `<<` may still be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {describe(key, kind=False)} (first on line {first.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path):
    """The file's YAML document as plain data (None for an empty file); a key given twice is an error."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{path}: {where}invalid YAML: {one_line(problem)}") from None
    except (ValueError, RecursionError) as exc:  # PyYAML's constructors: a date like 2001-13-01, deep nesting
        raise ConfigError(f"{path}: invalid YAML: {one_line(exc)}") from None


def merge(target, data, source: str, path: str = "", *, text: bool = False,
          origins: dict[str, str] | None = None) -> None:
    """Merge plain `data` over the dataclass (or dict of dataclasses) `target` in place.

    `text`: string values are typed text to parse (environment, flags), not file values.
    `origins`, if given, records `source` for each key set, so later checks can name it.
    """
    if data is None and not path:
        return  # an empty file
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path or 'top level'}: expected a mapping, got {describe(data)}")
    if isinstance(target, dict):
        names, hints = {key: key for key in target}, {}
    else:
        # `for_` is written `for`; `listen-address` may stand for `listen_address`.
        names = {f.name.rstrip("_"): f.name for f in dataclasses.fields(target)}
        hints = typing.get_type_hints(type(target))
    for key, value in data.items():
        dotted = f"{path}.{show(key)}" if path else show(key)
        name = names.get(key if isinstance(target, dict) else str(key).replace("-", "_"))
        if name is None:
            raise ConfigError(f"{source}: {dotted}: unknown key{suggest(key, names)}")
        current = target[name] if isinstance(target, dict) else getattr(target, name)
        if dataclasses.is_dataclass(current) or isinstance(current, dict):
            merge(current, value, source, dotted, text=text, origins=origins)
            continue
        setattr(target, name, convert(value, hints[name], f"{source}: {dotted}", name, text=text))
        if origins is not None:
            origins[dotted] = source


def nested(dotted: str, value) -> dict:
    """{"a": {"b": value}} for "a.b": a flag or environment value in the shape `merge` takes."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def convert(value, hint, where: str, name: str = "", *, text: bool = False):
    """`value` as the annotated type `hint` of the field `name`; `where` prefixes the error."""
    def fail(problem):
        raise ConfigError(f"{where}: {problem}")

    is_text = text and isinstance(value, str)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or value == "":
            return None
        hint = next(arg for arg in args if arg is not type(None))
    if hint is bool:
        if is_text and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            fail(f"expected true or false, got {describe(value)}")
        return value
    if hint in (int, float):
        return _number(value, hint, name, fail, is_text)
    if hint is str:
        if not isinstance(value, str):
            fail(f"expected text, got {describe(value)}")
        return _checked_text(value, fail)
    if typing.get_origin(hint) is list:
        if is_text:
            value = [part for part in value.split(",") if part]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            fail(f"expected a list of text, got {describe(value)}")
        return [_checked_text(item, fail) for item in value]
    raise TypeError(f"{where}: the loader has no rule for {hint}")  # a new field type, not a user error


def _number(value, hint, name: str, fail, is_text: bool):
    expected = "an integer" if hint is int else "a number"
    unit = size if name.endswith("_bytes") else seconds if name.endswith("_seconds") else None
    if isinstance(value, str) and (is_text or unit):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                if unit is None:
                    fail(f"expected {expected}, got {describe(value)}")
                try:
                    value = unit(value)
                except ConfigError as exc:
                    fail(exc)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"expected {expected}, got {describe(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and (hint is float or value.is_integer())):
        fail(f"expected {expected}, got {describe(value)}")
    try:
        number = hint(value)
    except OverflowError:
        fail(f"expected {expected}, got a number too large")
    if number < 0:
        fail(f"must not be negative, got {describe(value, kind=False)}")
    return number


def _checked_text(value: str, fail) -> str:
    if "\0" in value:
        fail(f"text must not contain NUL characters, got {describe(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(f"text must be valid Unicode, got {describe(value)}")
    return value


def to_dict(tree) -> dict:
    """Plain data with the key names a file uses (`for`, `from`)."""
    if dataclasses.is_dataclass(tree):
        return {f.name.rstrip("_"): to_dict(getattr(tree, f.name)) for f in dataclasses.fields(tree)}
    if isinstance(tree, dict):
        return {key: to_dict(item) for key, item in tree.items()}
    if isinstance(tree, list):
        return [to_dict(item) for item in tree]
    return tree


def suggest(key, names) -> str:
    """The "did you mean" hint for an unknown key: the closest known name, if any is close."""
    close = difflib.get_close_matches(str(key), [str(name) for name in names], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def show(key) -> str:
    """A key as it goes into a message: as written, or quoted if it would break the line."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def describe(value, *, kind: bool = True) -> str:
    """A value for an error message: short and on one line."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return f"{type(value).__name__} {_short.repr(value)}" if kind else _short.repr(value)


def one_line(problem) -> str:
    return " ".join(str(problem).split())
