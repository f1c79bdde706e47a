"""Jsonnet text the way jsonnetfmt writes it: quoted strings, field names, text blocks, templates.

A rendered string that holds settings (mixin/placeholders.py) becomes a template filled from an
object of named values, as monitoring mixins write them:

    'up{%(selector)s} == 0' % v
"""

from __future__ import annotations

import json
import re

from mixin.placeholders import MARK, Registry, TemplateError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYWORDS = {"assert", "else", "error", "false", "for", "function", "if", "import", "importstr", "importbin",
            "in", "local", "null", "tailstrict", "then", "self", "super", "true"}
INDENT = "  "


def string(text: str) -> str:
    """A quoted Jsonnet string as jsonnetfmt writes it: single quotes, double where that saves escapes."""
    if "'" in text and '"' not in text:
        return json.dumps(text, ensure_ascii=False)
    body = json.dumps(text, ensure_ascii=False)[1:-1].replace('\\"', '"').replace("'", "\\'")
    return f"'{body}'"


def plain(text: str) -> str:
    """A string that must hold no setting (a rule's name, an alert's name)."""
    text = str.__str__(text)  # a Text stand-in refuses repr()
    if MARK in text:
        raise TemplateError(f"a _config value in {text!r}, where the mixin writes fixed text")
    return string(text)


def field_name(key: str) -> str:
    """`key` as a field name: bare where Jsonnet allows it, else quoted (`'for'`)."""
    return key if IDENTIFIER.match(key) and key not in KEYWORDS else string(key)


def member(root: str, key: str) -> str:
    """`root.key`, or `root['key']` where the key is not an identifier."""
    return f"{root}.{key}" if IDENTIFIER.match(key) and key not in KEYWORDS else f"{root}[{string(key)}]"


def text(value: str, indent: str) -> str:
    """A string; several lines as a `|||-` text block (no final newline), indented under `indent`."""
    lines = value.split("\n")
    # A block takes its indentation from its first line and keeps every character as written.
    fits_block = (len(lines) > 1 and lines[0][:1] not in ("", " ") and "|||" not in value
                  and all(line.isprintable() and line == line.rstrip() for line in lines))
    if not fits_block:
        return string(value)
    inner = indent + INDENT
    return "|||-\n" + "\n".join(inner + line if line else "" for line in lines) + f"\n{indent}|||"


def value(item, indent: str = "") -> str:
    """Plain data (dicts, lists, strings, numbers, booleans) as Jsonnet, one field per line."""
    inner = indent + INDENT
    if isinstance(item, dict):
        if not item:
            return "{}"
        fields = [f"{inner}{field_name(key)}: {value(entry, inner)}," for key, entry in item.items()]
        return "{\n" + "\n".join(fields) + f"\n{indent}}}"
    if isinstance(item, list):
        short = ", ".join(value(entry, inner) for entry in item)
        if all(not isinstance(entry, (dict, list)) for entry in item) and len(short) < 60:
            return f"[{short}]"
        return "[\n" + "\n".join(f"{inner}{value(entry, inner)}," for entry in item) + f"\n{indent}]"
    if isinstance(item, str):
        plain(item)
        return text(item, indent)
    if isinstance(item, float) and item.is_integer():
        return str(int(item))  # 10485760, not 10485760.0: the same number in Jsonnet
    return json.dumps(item)


class Names:
    """The named values the templates of one rule (or one file) read: each Jsonnet expression once.

    A rule's table hands the expressions `shared` says are common to the file's table, which
    reserves them all first so that no rule's own value takes a name the file's object already uses.
    """

    def __init__(self, registry: Registry, shared: Names | None = None, is_shared=lambda code: False):
        self.registry = registry
        self.shared = shared
        self.is_shared = is_shared
        self.codes: dict[str, str] = {}  # Jsonnet expression -> its name here
        self.used: list[str] = []  # the expressions the templates read, in order of first use
        self.reads_shared = False  # whether the templates also read values of `shared`

    def reserve(self, codes) -> Names:
        for code in codes:
            self._assign(code)
        return self

    def _assign(self, code: str) -> str:
        if code not in self.codes:
            taken = set(self.codes.values()) | (set(self.shared.codes.values()) if self.shared else set())
            wanted = name = self.registry.name(code)
            number = 2
            while name in taken:
                name, number = f"{wanted}_{number}", number + 1
            self.codes[code] = name
        return self.codes[code]

    def name(self, code: str) -> str:
        if self.shared is not None and self.is_shared(code):
            self.reads_shared = True
            return self.shared.name(code)
        name = self._assign(code)
        if code not in self.used:
            self.used.append(code)
        return name


def template(rendered: str, names: Names, values: str, indent: str) -> str:
    """A rendered string as Jsonnet: a literal, or a template formatted with the object `values`."""
    rendered = str.__str__(rendered)  # a Text stand-in refuses str methods
    parts = rendered.split(MARK)
    if len(parts) % 2 == 0:
        raise TemplateError(f"unbalanced reference in {rendered!r}")
    if len(parts) == 1:
        return text(rendered, indent)
    body = "".join(part.replace("%", "%%") if index % 2 == 0 else f"%({names.name(part)})s"
                   for index, part in enumerate(parts))
    return f"{text(body, indent)} % {values}"
