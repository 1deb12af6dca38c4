"""What each method is and which ``-p NAME=VALUE`` parameters it takes, for ``emoboost methods``.

The parameters, defaults and allowed values come from the methods' own declarations (``PARAMS``,
:mod:`emoboost.methods.params`), so the listing cannot drift from what ``run`` accepts; the one-line
notes are the comments written beside each declaration in the source, and the long description is
the method module's docstring.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from emoboost.methods import METHODS, get_method

# `"name": value,  # note` inside a defaults dict, or a note on the comment lines just above the key
_ITEM = re.compile(r'^\s*"(?P<key>\w+)"\s*:\s*(?P<rest>.*)$')


@dataclass
class Parameter:
    name: str
    default: Any
    note: str = ""
    training_loop: bool = False  # declared by a base class: the training loop every torch method shares
    allowed: str = ""  # what its rule accepts ("an integer >= 1", "one of 'ua', 'loss'")


@dataclass
class MethodInfo:
    name: str
    summary: str
    requires: tuple[str, ...]
    module: str
    description: str = ""
    parameters: list[Parameter] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "summary": self.summary, "requires": list(self.requires), "module": self.module,
                "parameters": [{"name": p.name, "default": p.default, "note": p.note, "allowed": p.allowed,
                                "training_loop": p.training_loop} for p in self.parameters]}


def _notes(source: str) -> dict[str, str]:
    """Key -> the comment beside it (or the comment block right above it) in a dict literal's source."""
    notes: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("#"):
            above.append(s.lstrip("# ").strip())
            continue
        m = _ITEM.match(line)
        if m:
            inline = m["rest"].split("  # ", 1)[1].strip() if "  # " in m["rest"] else ""
            note = inline or " ".join(above)
            if note:
                notes.setdefault(m["key"], note)
        above = []
    return notes


def _block(source: str, name: str) -> str:
    """The ``name = {...}`` / ``name: ... = {...}`` literal in ``source`` (``name="return"``: the ``return {...}``
    literal), up to its closing brace."""
    head = r"^\s*return\s*{" if name == "return" else rf"^\s*{name}\b[^=\n]*=\s*{{"
    start = re.search(head, source, flags=re.M)
    if start is None:
        return ""
    depth, i = 0, start.end() - 1
    for j in range(i, len(source)):
        depth += {"{": 1, "}": -1}.get(source[j], 0)
        if depth == 0:
            return source[i : j + 1]
    return source[i:]


def _source_notes(cls: type) -> dict[str, str]:
    """Notes of the parameters ``cls`` and its bases declare (their ``PARAMS`` literals; the class's own win)."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "PARAMS" not in vars(klass):
            continue
        try:
            block = _block(inspect.getsource(klass), "PARAMS")
            for fn in re.findall(r"\*\*(\w+)\(", block):  # declarations shared through a function (**pooled_params(...))
                shared = getattr(sys.modules[klass.__module__], fn, None)
                if callable(shared):
                    notes.update(_notes(_block(inspect.getsource(shared), "return")))
            notes.update(_notes(block))
        except (OSError, TypeError):  # no source (a frozen or compiled install): defaults without notes
            pass
    return notes


def _summary(cls: type) -> str:
    """The class's own docstring's first line (not an inherited one), else its module's."""
    doc = inspect.cleandoc(vars(cls).get("__doc__") or "") or inspect.getdoc(sys.modules[cls.__module__]) or ""
    return doc.splitlines()[0] if doc else ""


def _inputs(cls: type) -> tuple[str, ...]:
    """The features the method's default configuration reads (a method built with two placeholder classes)."""
    return tuple(cls(["a", "b"]).requires)


def describe(name: str) -> MethodInfo:
    """Everything ``emoboost methods NAME`` prints about one method."""
    cls = get_method(name)
    key = name.lower().replace("-", "_")
    own = vars(cls).get("PARAMS", {})
    notes = _source_notes(cls)
    params = [Parameter(k, p.default, notes.get(k, ""), k not in own, p.rule.describe())
              for k, p in cls.declared_params().items()]
    params.sort(key=lambda p: (p.training_loop, list(own).index(p.name) if p.name in own else 0))
    return MethodInfo(key, _summary(cls), _inputs(cls), cls.__module__,
                      inspect.getdoc(sys.modules[cls.__module__]) or "", params)


def catalog() -> list[MethodInfo]:
    """Every registered method, without its parameters' notes (``emoboost methods``)."""
    out = []
    for key in sorted(METHODS):
        cls = get_method(key)
        out.append(MethodInfo(key, _summary(cls), _inputs(cls), cls.__module__))
    return out


def format_method(info: MethodInfo, long: bool = False) -> str:
    """Plain-text page for one method: summary, inputs, parameters with defaults and notes."""
    lines = [f"{info.name}: {info.summary}", f"  inputs: {', '.join(info.requires)}   module: {info.module}", ""]
    width = max((len(p.name) for p in info.parameters), default=0)
    vwidth = min(max((len(repr(p.default)) for p in info.parameters), default=0), 20)
    for group, title in ((False, "parameters (-p NAME=VALUE), with defaults:"),
                         (True, "training loop (every torch method):")):
        rows = [p for p in info.parameters if p.training_loop is group]
        if not rows:
            continue
        lines.append(title)
        for p in rows:
            value = f"{p.default!r:<{vwidth}}" if p.note else repr(p.default)
            lines.append(f"  {p.name:<{width}} = {value}" + (f"  # {p.note}" if p.note else ""))
        lines.append("")
    if long and info.description:
        lines += [info.description, ""]
    elif info.description:
        lines.append("(--long adds the method module's description)")
    return "\n".join(lines).rstrip() + "\n"
