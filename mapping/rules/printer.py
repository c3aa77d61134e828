"""The canonical text of a rule: ``parse_rule(format_rule(x), schema).expr == x``.

Parentheses appear only where precedence needs them (Python's: ``or`` < ``and`` < ``not`` <
comparisons < ``+ -`` < ``* /``), durations use the largest exact unit (``"48h"`` prints as
``"2d"``), strings use double quotes, instants print as ``datetime("...Z")`` in UTC with
milliseconds. The canonical text is what ``rule_hash`` is computed from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from mapping.rules import ast as r

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))
_OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY, _ATOM = range(1, 9)
_PREC = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL}


def format_rule(expr: r.Expr) -> str:
    """The canonical source text of ``expr``."""
    return _fmt(expr)[0]


def format_duration(ms: int) -> str:
    for unit, size in _UNITS:
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_instant(ms: int) -> str:
    text = (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _wrap(expr: r.Expr, minimum: int) -> str:
    text, prec = _fmt(expr)
    return text if prec >= minimum else f"({text})"


def _call(name: str, *args: str) -> tuple[str, int]:
    return f"{name}({', '.join(args)})", _ATOM


def _literal(lit: r.Literal_) -> tuple[str, int]:
    value = lit.value
    if lit.type is r.Type.DATETIME and isinstance(value, int | float) and not isinstance(value, bool):
        return _call("datetime", _str(format_instant(int(value))))
    if lit.type is r.Type.DURATION and isinstance(value, int):
        return _str(format_duration(value)), _ATOM
    if isinstance(value, bool):
        return ("true" if value else "false"), _ATOM
    if isinstance(value, str):
        return _str(value), _ATOM
    if isinstance(value, tuple):
        return "[" + ", ".join(_str(v) if isinstance(v, str) else repr(v) for v in value) + "]", _ATOM
    if value is None:
        return "None", _ATOM
    return repr(value), (_UNARY if value < 0 or repr(value).startswith("-") else _ATOM)


def _window(window: r.Window) -> list[str]:
    if window.kind == "within" and window.start_ms is not None:
        return [f"within={_str(format_duration(window.start_ms))}"]
    if window.kind == "between" and window.start_ms is not None:
        older, newer = format_duration(window.start_ms), format_duration(window.end_ms)
        return [f"between=({_str(older)}, {_str(newer)})"]
    return []


def _agg(agg: r.Agg) -> tuple[str, int]:
    args = [_str(agg.event)]
    if agg.of is not None:
        args.append(f"of={_str(agg.of.name)}")
    if agg.where is not None:
        args.append(f"where={format_rule(agg.where)}")
    return _call(agg.func, *args, *_window(agg.window))


def _sequence(seq: r.Sequence) -> tuple[str, int]:
    args = [
        _str(seq.first),
        f"not_followed_by={_str(seq.then_not)}",
        f"gap={_str(format_duration(seq.gap_ms))}",
        *_window(seq.window),
    ]
    if seq.where is not None:
        args.append(f"where={format_rule(seq.where)}")
    if seq.then_where is not None:
        args.append(f"then_where={format_rule(seq.then_where)}")
    if seq.latest:
        args.append("latest=true")
    return _call("sequence", *args)


def _bool(items: tuple[r.Expr, ...], word: str, func: str, prec: int) -> tuple[str, int]:
    if len(items) < 2:
        return _call(func, *(format_rule(i) for i in items))
    return f" {word} ".join(_wrap(i, prec + 1) for i in items), prec


def _fmt(e: r.Expr) -> tuple[str, int]:
    match e:
        case r.Literal_():
            return _literal(e)
        case r.Attr(name) | r.Prop(name) | r.TraitRef(name) | r.EventField(name):
            return name, _ATOM
        case r.Now():
            return "now", _ATOM
        case r.Ago(ms):
            return _call("ago", _str(format_duration(ms)))
        case r.Agg():
            return _agg(e)
        case r.Sequence():
            return _sequence(e)
        case r.ScoreRef(name):
            return _call("score", _str(name))
        case r.TierRef(name):
            return _call("tier", _str(name))
        case r.SegmentRef(name):
            return _call("segment", _str(name))
        case r.Rank("percentile", x, _):
            return _call("percentile", format_rule(x))
        case r.Rank(_, x, n):
            return _call("ntile", format_rule(x), str(n))
        case r.Rfm(part):
            return _call(f"rfm_{part}")
        case r.Compare(op, left, right):
            return f"{_wrap(left, _ADD)} {op} {_wrap(right, _ADD)}", _CMP
        case r.In(x, values, negate):
            return f"{_wrap(x, _ADD)} {'not in' if negate else 'in'} {_literal(values)[0]}", _CMP
        case r.StrOp(op, x, arg):
            return _call(op, format_rule(x), format_rule(arg))
        case r.IsSet(x, negate):
            return _call("is_not_set" if negate else "is_set", format_rule(x))
        case r.Between(x, low, high):
            return _call("between", format_rule(x), format_rule(low), format_rule(high))
        case r.Arith(op, left, right):
            prec = _PREC[op]
            return f"{_wrap(left, prec)} {op} {_wrap(right, prec + 1)}", prec
        case r.DaysSince(x):
            return _call("days_since", format_rule(x))
        case r.Coalesce(x, default):
            return _call("coalesce", format_rule(x), format_rule(default))
        case r.And(items):
            return _bool(items, "and", "all", _AND)
        case r.Or(items):
            return _bool(items, "or", "any", _OR)
        case r.Not(item):
            return f"not {_wrap(item, _NOT)}", _NOT
    raise TypeError(f"not a rule node: {e!r}")
