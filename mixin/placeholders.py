"""Stand-ins for `_config` values while mixin/build.py renders the rules of alerting/rules.py.

A `Text` (selector, duration, severity) or a `Number` (threshold, count) takes the place of one
setting. What Jsonnet can reproduce exactly becomes a Jsonnet expression:

    f"{selector}", str(selector), "a" + selector     the expression that reads the setting
    seconds(window)                                   lib.seconds(window), a Number
    n + m, n - m, n * m, n / m, -n, abs(n)            the same arithmetic (either side a Number)
    f"{n:.6g}", f"{n:g}"                              lib.formatG(n, 6), Python's %g (std.format's is not)
    f"{n}", str(n), f"{n:d}"                          std.toString(n), for whole-number settings
    number(n)                                         lib.number(n), PromQL's way of printing it

Every other operation raises TemplateError naming the setting: a comparison or bool() would decide
a Python branch that Jsonnet cannot follow, and anything else (hashing, iteration, len(), int(),
repr(), str methods, other format specs: std.format's %f and %e round unlike Python) would write
the wrong text without a word.

Expressions enter rendered text between two MARKs; the `Registry` of one build knows each of them
with the name it goes by in a Jsonnet template (`%(threshold)s`), and refuses any it did not make:
text cut or changed after a setting went into it.
"""

from __future__ import annotations

import math
import re

MARK = "\x00"  # brackets a Jsonnet expression inside rendered text; never in a rule or a setting
GENERAL_FORMAT = re.compile(r"^(?:\.(\d|1[0-5]))?g$")  # :g, :.6g ... :.15g, printed by lib.formatG
UNIT_NAMES = {("*", 100): "percent", ("*", 1000): "milli", ("/", 1024): "kib", ("/", 1024 ** 2): "mib"}
OPERATOR_NAMES = {"+": "plus", "-": "minus", "*": "times", "/": "over"}
ATOM, UNARY, PRODUCT, SUM = 3, 2.5, 2, 1  # Jsonnet precedence: parentheses only where the order needs them
PRECEDENCE = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT}


class TemplateError(Exception):
    """The rules use a `_config` value in a way Jsonnet evaluation cannot reproduce (e.g. in an `if`)."""


class Registry:
    """The Jsonnet expressions one build embedded in rendered text, and the name each goes by."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def embed(self, code: str, name: str) -> str:
        self.names.setdefault(code, name)
        return f"{MARK}{code}{MARK}"

    def name(self, code: str) -> str:
        if code not in self.names:
            raise TemplateError(f"rendered text holds {code!r}, which no setting embedded: the text of a "
                                f"setting was cut or changed after it went into the rule")
        return self.names[code]


UNTRANSLATED = "has no Jsonnet translation in mixin/placeholders.py"
BRANCH = "decides a Python branch of the rules, which Jsonnet cannot follow"


def refusal(operation: str, reason: str = UNTRANSLATED):
    """A method that raises TemplateError naming the setting and the refused operation."""
    def refuse(self, *args, **kwargs):
        raise TemplateError(f"{self.code}: {operation} on this _config value {reason}; write the rule so "
                            f"that the value only goes into text, or teach mixin/placeholders.py the operation")
    refuse.__name__ = f"refused {operation}"
    return refuse


COMPARISONS = {"__eq__": "==", "__ne__": "!=", "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">="}
# Operations neither stand-in translates, with the words an error names them by.
REFUSED = {
    "__bool__": "bool()", "__hash__": "hash()", "__iter__": "iteration", "__reversed__": "reversed()",
    "__len__": "len()", "__contains__": "`in`", "__getitem__": "indexing", "__repr__": "repr()",
    "__int__": "int()", "__float__": "float()", "__complex__": "complex()", "__index__": "use as an index",
    "__round__": "round()", "__trunc__": "math.trunc()", "__floor__": "math.floor()", "__ceil__": "math.ceil()",
    "__floordiv__": "//", "__rfloordiv__": "//", "__mod__": "%", "__rmod__": "%", "__divmod__": "divmod()",
    "__rdivmod__": "divmod()", "__pow__": "**", "__rpow__": "**", "__lshift__": "<<", "__rlshift__": "<<",
    "__rshift__": ">>", "__rrshift__": ">>", "__and__": "&", "__rand__": "&", "__or__": "|", "__ror__": "|",
    "__xor__": "^", "__rxor__": "^", "__invert__": "~", "__matmul__": "@", "__rmatmul__": "@",
    "__neg__": "unary -", "__pos__": "unary +", "__abs__": "abs()",
    "__reduce__": "pickling", "__reduce_ex__": "pickling", "__getstate__": "pickling",
    "__getnewargs__": "pickling",
}


def guard(cls, translated: set[str], extra: dict[str, str] | None = None):
    """Give `cls` a refusing method for every operation in REFUSED, COMPARISONS and `extra` it does not translate."""
    for method, label in COMPARISONS.items():
        setattr(cls, method, refusal(f"`{label}`", BRANCH))
    for method, label in {**REFUSED, **(extra or {})}.items():
        if method not in translated:
            setattr(cls, method, refusal(label, BRANCH if method == "__bool__" else UNTRANSLATED))
    return cls


class Placeholder:
    """What both stand-ins share: the Jsonnet code, its name in templates, the registry, immutability."""

    def _bind(self, code: str, name: str, registry: Registry):
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "registry", registry)

    def embedded(self, code: str | None = None) -> str:
        return self.registry.embed(code or self.code, self.name)

    def __setattr__(self, key, value):
        raise TemplateError(f"{self.code}: a _config stand-in cannot change")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class Text(Placeholder, str):
    """A text setting: wherever it goes into text it is the embedded expression that reads it."""

    def __new__(cls, code: str, name: str, registry: Registry):
        text = str.__new__(cls, registry.embed(code, name))
        text._bind(code, name, registry)
        return text

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        if spec:
            refusal(f"the format spec {spec!r}")(self)
        return str.__str__(self)

    def __add__(self, other):
        if type(other) is not str and not isinstance(other, Text):
            refusal(f"+ {type(other).__name__}")(self)
        return str.__str__(self) + str.__str__(other)

    def __radd__(self, other):
        if type(other) is not str:
            refusal(f"{type(other).__name__} +")(self)
        return other + str.__str__(self)

    def seconds(self) -> Number:
        return Number(f"lib.seconds({self.code})", f"{self.name}_seconds", self.registry, whole=True)


# Every public str method (lower, split, format, startswith, ...) would work on the Jsonnet code as if
# it were the setting's value.
guard(Text, {"__str__", "__format__", "__add__", "__radd__"}, {
    name: f"str.{name}()" for name in dir(str) if not name.startswith("_")} | {
    "__mul__": "* (repetition)", "__rmul__": "* (repetition)"})


def constant(value, placeholder: Number, operator: str) -> Number:
    """`value` as a Number, if arithmetic of `placeholder` with it can be written in Jsonnet."""
    if isinstance(value, Number):
        return value
    if type(value) in (int, float) and math.isfinite(value):
        return Number(repr(value), re.sub(r"\W", "_", f"{value:g}"), placeholder.registry,
                      whole=isinstance(value, int), precedence=ATOM if value >= 0 else UNARY, constant=value)
    refusal(f"`{operator}` with {type(value).__name__} {value!r}")(placeholder)


def result_name(operator: str, left: Number, right: Number) -> str:
    """`threshold_percent` for threshold * 100, `retention_seconds_plus_margin_seconds` for a sum."""
    if operator in "*+" and left.constant is not None:
        left, right = right, left
    unit = UNIT_NAMES.get((operator, right.constant)) if right.constant is not None else None
    return f"{left.name}_{unit}" if unit else f"{left.name}_{OPERATOR_NAMES[operator]}_{right.name}"


class Number(Placeholder):
    """A number setting, or arithmetic on one; formatting it embeds the Jsonnet that prints it."""

    def __init__(self, code: str, name: str, registry: Registry, *, whole: bool, precedence: float = ATOM,
                 constant: float | None = None):
        self._bind(code, name, registry)
        object.__setattr__(self, "whole", whole)  # a whole number in Python, so str() prints no ".0"
        object.__setattr__(self, "precedence", precedence)
        object.__setattr__(self, "constant", constant)  # the value of a literal operand, else None

    def _code(self, at_least: float) -> str:
        return self.code if self.precedence >= at_least else f"({self.code})"

    def _binary(self, operator: str, left: Number, right: Number) -> Number:
        level = PRECEDENCE[operator]
        # The right operand of equal precedence keeps its parentheses: Python's left-to-right order.
        code = f"{left._code(level)} {operator} {right._code(level + 0.5)}"
        whole = left.whole and right.whole and operator != "/"
        return Number(code, result_name(operator, left, right), self.registry, whole=whole, precedence=level)

    def __add__(self, other): return self._binary("+", self, constant(other, self, "+"))
    def __radd__(self, other): return self._binary("+", constant(other, self, "+"), self)
    def __sub__(self, other): return self._binary("-", self, constant(other, self, "-"))
    def __rsub__(self, other): return self._binary("-", constant(other, self, "-"), self)
    def __mul__(self, other): return self._binary("*", self, constant(other, self, "*"))
    def __rmul__(self, other): return self._binary("*", constant(other, self, "*"), self)
    def __truediv__(self, other): return self._binary("/", self, constant(other, self, "/"))
    def __rtruediv__(self, other): return self._binary("/", constant(other, self, "/"), self)

    def __neg__(self) -> Number:
        return Number(f"-{self._code(ATOM)}", f"minus_{self.name}", self.registry, whole=self.whole,
                      precedence=UNARY)

    def __pos__(self) -> Number:
        return self

    def __abs__(self) -> Number:
        return Number(f"std.abs({self.code})", f"abs_{self.name}", self.registry, whole=self.whole)

    def __format__(self, spec: str) -> str:
        if spec in ("", "d") and self.whole:
            return self.embedded(f"std.toString({self.code})")
        general = GENERAL_FORMAT.match(spec)
        if general:
            return self.embedded(f"lib.formatG({self.code}, {general[1] or 6})")
        reason = ("would print a fraction the way Python does, which Jsonnet does not (use :g or number())"
                  if spec in ("", "d") else UNTRANSLATED)
        refusal(f"the format spec {spec!r}", reason)(self)

    def __str__(self) -> str:
        if not self.whole:
            refusal("str()", "would print a fraction the way Python does, which Jsonnet does not")(self)
        return self.__format__("")

    def promql(self) -> str:
        """alerting/rules.py `number()`: the threshold as PromQL reads it."""
        return self.embedded(f"lib.number({self.code})")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        refusal(f".{name}")(self)


guard(Number, {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
               "__rtruediv__", "__neg__", "__pos__", "__abs__", "__format__", "__str__"})
