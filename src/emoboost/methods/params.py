"""Method parameters, declared once: each name with its default and the rule its values obey.

As scikit-learn's parameter constraints: a method's class declares ``PARAMS = {name: Param(default,
rule)}`` (a plain value overrides the default of a parameter its base class declares, keeping that
rule), and :func:`resolve` turns what a user gave (``-p NAME=VALUE``, a recipe, a saved model's JSON)
into the method's parameters in one pass: aliases, unknown names refused with the valid ones listed,
defaults merged, every value checked (type, range, finite numbers, choices). A bad value is one line
naming the parameter, the value and what is allowed, raised when the method is built, before any
feature is extracted.

Rules return the value to store: most return it unchanged; a few write it one way (``"true"`` ->
``True``, a layer ``"2,3,4"`` -> ``[2, 3, 4]``), so the saved parameters say what the method used.
Each rule also names values it refuses (:meth:`Rule.invalid`): the conformance test feeds every
method's parameters those. Torch-free and numpy-free: the catalog and ``--help`` import it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any


class Rule:
    """What values a parameter accepts: ``rule(value)`` -> the value to store, or :class:`ValueError`."""

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """What is allowed, in words that complete "NAME must be ..."."""
        raise NotImplementedError

    def invalid(self) -> list[Any]:
        """Values this rule refuses (at least one): the conformance test checks that they are refused."""
        raise NotImplementedError

    def refuse(self, value: Any) -> ValueError:
        return ValueError(f"must be {self.describe()}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class Choice(Rule):
    """One of ``options``; ``aliases`` map other spellings onto one (``None`` -> ``"none"``)."""

    options: tuple[Any, ...]
    aliases: tuple[tuple[Any, Any], ...] = ()
    lower: bool = False  # strings compared in lower case (and stored so)

    def __call__(self, value: Any) -> Any:
        v = value.lower() if self.lower and isinstance(value, str) else value
        for alias, to in self.aliases:
            if type(v) is type(alias) and v == alias:
                return to
        for o in self.options:
            if type(v) is type(o) and v == o:
                return o
        raise self.refuse(value)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def invalid(self) -> list[Any]:
        return ["bogus", 7]


def one_of(*options: Any, aliases: dict[Any, Any] | None = None, lower: bool = False) -> Choice:
    return Choice(tuple(options), tuple((aliases or {}).items()), lower)


@dataclass(frozen=True)
class Int(Rule):
    """An integer in ``[lo, hi]`` (an integral float such as ``1e3`` is stored as an int)."""

    lo: int | None = None
    hi: int | None = None
    none: bool = False  # None accepted too
    odd: bool = False

    def __call__(self, value: Any) -> Any:
        if value is None and self.none:
            return None
        v = value
        if _is_real(v) and not _is_int(v) and math.isfinite(v) and float(v).is_integer():
            v = int(v)
        if not _is_int(v) or (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi) \
                or (self.odd and v % 2 == 0):
            raise self.refuse(value)
        return int(v)

    def describe(self) -> str:
        kind = "an odd integer" if self.odd else "an integer"
        if self.lo is not None and self.hi is not None:
            kind += f" in [{self.lo}, {self.hi}]"
        elif self.lo is not None:
            kind += f" >= {self.lo}"
        elif self.hi is not None:
            kind += f" <= {self.hi}"
        return kind + (" or None" if self.none else "")

    def invalid(self) -> list[Any]:
        out: list[Any] = ["x", 1.5]
        out += [self.lo - 1] if self.lo is not None else []
        out += [self.hi + 1] if self.hi is not None else []
        out += [] if self.none else [None]
        out += [4] if self.odd and (self.lo is None or self.lo <= 4) else []
        return out


@dataclass(frozen=True)
class Float(Rule):
    """A finite number in the interval given by ``lo``/``hi`` (``*_open``: the bound itself excluded)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    none: bool = False

    def __call__(self, value: Any) -> Any:
        if value is None and self.none:
            return None
        if not _is_real(value) or not math.isfinite(value):
            raise self.refuse(value)
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise self.refuse(value)
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            raise self.refuse(value)
        return value

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            what = f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            what = f"a finite number {'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            what = f"a finite number {'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            what = "a finite number"
        return what + (" or None" if self.none else "")

    def invalid(self) -> list[Any]:
        out: list[Any] = ["x", float("nan"), float("inf")]
        if self.lo is not None:
            out.append(self.lo if self.lo_open else self.lo - 1)
        if self.hi is not None:
            out.append(self.hi if self.hi_open else self.hi + 1)
        return out + ([] if self.none else [None])


TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


@dataclass(frozen=True)
class Bool(Rule):
    """True or false: a boolean, 0/1, or the words a command line or JSON config produces."""

    def __call__(self, value: Any) -> Any:
        if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool too, without numpy
            return bool(value)
        if _is_int(value) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
            return value.lower() in TRUE_WORDS
        raise self.refuse(value)

    def describe(self) -> str:
        return "true or false"

    def invalid(self) -> list[Any]:
        return ["maybe", 2, None]


@dataclass(frozen=True)
class Text(Rule):
    """A string (a path, a URL, a name); ``none_words`` are stored as None."""

    what: str = "a string"
    none: bool = True
    none_words: tuple[str, ...] = ()

    def __call__(self, value: Any) -> Any:
        if value is None and self.none:
            return None
        if not isinstance(value, str):
            raise self.refuse(value)
        return None if value in self.none_words else value

    def describe(self) -> str:
        return self.what + (" or None" if self.none else "")

    def invalid(self) -> list[Any]:
        return [3, ["a"]]


def _scalar(text: str) -> Any:
    """One item of a comma-separated list as a command line writes it: an int, a float, None or the text."""
    t = text.strip()
    if t in ("None", "none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


@dataclass(frozen=True)
class ListOf(Rule):
    """A list (or tuple) of values each obeying ``item``; ``"1,2,3"`` (``-p C_grid=1,10``) is the list [1, 2, 3]."""

    item: Rule
    min_len: int = 1
    length: int | None = None  # exactly this many
    none: bool = False

    def __call__(self, value: Any) -> Any:
        if value is None and self.none:
            return None
        v = [_scalar(t) for t in value.split(",") if t.strip()] if isinstance(value, str) and "," in value else value
        if not isinstance(v, (list, tuple)) or len(v) < self.min_len or (self.length is not None and len(v) != self.length):
            raise self.refuse(value)
        try:
            items = [self.item(x) for x in v]
        except ValueError:
            raise self.refuse(value) from None
        return type(v)(items)

    def describe(self) -> str:
        n = f"a list of {self.length}" if self.length is not None else \
            "a non-empty list of" if self.min_len == 1 else f"a list of at least {self.min_len}"
        return f"{n} [{self.item.describe()}]" + (" or None" if self.none else "")

    def invalid(self) -> list[Any]:
        out: list[Any] = ["x", "x,y", [self.item.invalid()[0]]]
        out += [[]] if self.min_len or self.length else []
        return out + ([] if self.none else [None])


@dataclass(frozen=True)
class Either(Rule):
    """A value obeying any one of ``rules`` (the first that accepts it says how it is stored)."""

    rules: tuple[Rule, ...]

    def __call__(self, value: Any) -> Any:
        for r in self.rules:
            try:
                return r(value)
            except ValueError:
                continue
        raise self.refuse(value)

    def describe(self) -> str:
        return " or ".join(r.describe() for r in self.rules)

    def invalid(self) -> list[Any]:
        out = []
        for v in (v for r in self.rules for v in r.invalid()):
            try:
                self(v)
            except ValueError:
                out.append(v)
        return out


@dataclass(frozen=True)
class Param:
    """A parameter's default and its rule (a method's ``PARAMS`` maps names to these)."""

    default: Any
    rule: Rule


def declared(bases: Iterable[dict[str, Param]], own: dict[str, Any], owner: str) -> dict[str, Param]:
    """A class's parameters: its bases' (in order), then its own ``PARAMS``.

    A plain value in ``own`` is a new default for a parameter a base declares (its rule kept); every
    default must obey its rule, so a method cannot declare a default it would refuse from a user.
    """
    table: dict[str, Param] = {}
    for b in bases:
        table.update(b)
    for name, p in own.items():
        if not isinstance(p, Param):
            if name not in table:
                raise TypeError(f"{owner}: parameter {name!r} has a default but no rule: declare Param(default, rule)")
            p = Param(p, table[name].rule)
        try:
            p.rule(p.default)
        except ValueError as e:
            raise TypeError(f"{owner}: the default of {name!r} breaks its own rule: {e}") from None
        table[name] = p
    return table


def resolve(owner: str, table: dict[str, Param], given: dict[str, Any],
            aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """``given`` -> every declared parameter's value (defaults merged once, each value checked).

    Raises a one-line :class:`ValueError` starting with ``owner``: an unknown name (with the valid
    ones and the likely typo), an alias given with its parameter, or a value its rule refuses.
    """
    given = dict(given)
    for alias, name in (aliases or {}).items():
        if alias in given:
            v = given.pop(alias)
            if name in given and given[name] != v:
                raise ValueError(f"{owner}: {alias}={v!r} and {name}={given[name]!r} name the same parameter; give one")
            given[name] = v
    unknown = sorted(set(given) - set(table))
    for name in unknown:
        if name in NOT_SUPPORTED:
            raise ValueError(f"{owner}: {NOT_SUPPORTED[name]}")
    if unknown:
        raise ValueError(f"{owner}: unknown parameter(s) {', '.join(map(repr, unknown))}{_typo_hint(unknown, table)}; "
                         f"valid: {', '.join(sorted(table))}")
    out = {}
    for name, p in table.items():
        value = given.get(name, p.default)
        try:
            out[name] = p.rule(value)
        except ValueError as e:
            raise ValueError(f"{owner}: {name} {e}") from None
    return out


def _typo_hint(unknown: list[str], known: Iterable[str]) -> str:
    close = {u: m[0] for u in unknown if (m := difflib.get_close_matches(u, list(known), n=1))}
    if len(unknown) == 1 and close:
        return f" (did you mean {close[unknown[0]]!r}?)"
    return f" (did you mean {', '.join(f'{m!r} for {u!r}' for u, m in close.items())}?)" if close else ""


# -- rules several methods share ---------------------------------------------------------------------
POSITIVE = Float(0.0, lo_open=True)
NON_NEGATIVE = Float(0.0)
DROPOUT = Float(0.0, 1.0, hi_open=True)
SPEAKER_NORM = one_of("none", "speaker", aliases={None: "none", False: "none", "": "none", "None": "none"})
"""``speaker`` z-normalises each speaker's features with its own statistics; ``none`` (or None) does not."""


class Adapt(Rule):
    """A speaker-adaptation protocol (:func:`emoboost.methods.adapt_protocol.parse_adapt` holds the grammar),
    stored in its canonical spelling (``"Enrol:5"`` -> ``"enrol:5"``)."""

    def __call__(self, value: Any) -> Any:
        from emoboost.methods.adapt_protocol import parse_adapt  # numpy: only when a method is built

        try:
            return str(parse_adapt(value))
        except ValueError:
            raise self.refuse(value) from None

    def describe(self) -> str:
        return "none, transductive, loo, online, online:skewed, enrol:K or enrol:K:skewed (K >= 1)"

    def invalid(self) -> list[Any]:
        return ["bogus", "enrol:0", "loo:skewed"]


ADAPT = Adapt()
NOT_SUPPORTED = {"adapt": "speaker adaptation (adapt=) is not supported; the pooled methods (logreg, linear) support it"}
"""Parameters some methods declare, and what to tell a user who gives one to a method that does not."""


__all__ = ["ADAPT", "DROPOUT", "NOT_SUPPORTED", "NON_NEGATIVE", "POSITIVE", "SPEAKER_NORM", "Bool", "Choice", "Either", "Float", "Int",
           "Adapt", "ListOf", "Param", "Rule", "Text", "declared", "one_of", "resolve"]
