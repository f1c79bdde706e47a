"""What each `_config` field is, in one line: the attribute docstrings of core/settings.py.

A settings field documents itself with the string right below it (the convention Sphinx and
editors read), which `_config` (mixin/config.libsonnet) repeats as the comment above the field:

    threshold: float = 0.0
    \"\"\"The level the alert's measure crosses to fire: ...\"\"\"
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap


@functools.cache
def class_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring, for the fields `cls` itself declares."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs


def field_doc(cls: type, name: str) -> str:
    """The one-line docstring of field `name` of the dataclass `cls`, looked up where it is declared."""
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            doc = class_docs(klass).get(name)
            if not doc:
                raise LookupError(f"{klass.__module__}.{klass.__qualname__}.{name} has no docstring; "
                                  f"_config's comments (mixin/config.libsonnet) are made from them")
            return doc
    raise LookupError(f"{cls.__qualname__} has no field {name!r}")
