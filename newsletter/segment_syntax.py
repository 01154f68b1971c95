"""The segment language, pure: the grammar, the typed tree, and the anchored text planning
keeps (standard library and lark only; the SQL is store/audience.py's, the checks against
the store's tags newsletter/segments.py's).

An age is relative (`joined<30d`: counted back from now) or anchored at an instant
(`joined<30d@2026-12-07T12:00:00Z`: counted back from then). `anchored(expr, now)` writes
every relative age of an expression anchored at `now`: what an issue's plan stores, so its
audience does not drift while it is sent."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from newsletter.exceptions import BadTag, SegmentError
from newsletter.tags import normalize_tag

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negation
         | atom
?atom: tag
     | age
     | "(" or_expr ")"
tag: _TAG_PREFIX TAG
age: FIELD OP DURATION ANCHOR?
FIELD: "joined"i | "opened"i
OP: "<" | ">"
DURATION: /[0-9]+[hdw]/i
ANCHOR: /@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z/
TAG: /[A-Za-z0-9][A-Za-z0-9_-]*/
_TAG_PREFIX: "tag:"i
_AND: "and"i
_OR: "or"i
_NOT: "not"i
%import common.WS
%ignore WS
"""

UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_DURATION = timedelta(days=365 * 100)
_EXPECTED = {
    "TAG": "a tag name",
    "FIELD": "'joined' or 'opened'",
    "OP": "'<' or '>'",
    "DURATION": "a duration such as 30d",
    "ANCHOR": "an instant such as @2026-01-31T09:00:00Z",
    "LPAR": "'('",
    "RPAR": "')'",
    "_AND": "'and'",
    "_OR": "'or'",
    "_NOT": "'not'",
    "_TAG_PREFIX": "'tag:'",
    "$END": "the end",
}


# -- the tree --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tag:
    name: str
    column: int


@dataclass(frozen=True)
class Age:
    field: str  # joined | opened
    op: str  # < (within) | > (longer ago, or never for opened)
    span: timedelta
    column: int
    anchor: datetime | None = None  # counted back from this instant; None: from now


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Any:
    parts: tuple[Node, ...]


Node = Tag | Age | Not | All | Any


# -- parsing ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _where(expr: str, column: int) -> str:
    return f"segment {expr!r}: column {column}"


def parse(expr: str) -> Node:
    """The expression as a tree, or SegmentError naming the column and what was expected."""
    from lark import Token, Tree
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if not expr.strip():
        raise SegmentError(f"{_where(expr, 1)}: empty (write e.g. tag:films)", 1)
    try:
        tree = _parser().parse(expr)
    except UnexpectedEOF as exc:
        wanted = _wanted(exc.expected)
        raise SegmentError(
            f"{_where(expr, len(expr) + 1)}: the expression ends early; expected {wanted}",
            len(expr) + 1,
        ) from None
    except UnexpectedToken as exc:
        column = exc.column if isinstance(exc.column, int) and exc.column > 0 else len(expr) + 1
        if exc.token.type == "$END":
            column = len(expr) + 1
            message = f"the expression ends early; expected {_wanted(exc.expected)}"
        else:
            message = f"unexpected {str(exc.token)!r}; expected {_wanted(exc.expected)}"
        raise SegmentError(f"{_where(expr, column)}: {message}", column) from None
    except UnexpectedCharacters as exc:
        at = exc.pos_in_stream or 0
        char = expr[at] if at < len(expr) else ""
        raise SegmentError(
            f"{_where(expr, exc.column)}: unexpected {char!r}; expected {_wanted(exc.allowed)}",
            exc.column,
        ) from None

    def build(node: Tree | Token) -> Node:
        assert isinstance(node, Tree)
        kind = node.data
        if kind == "tag":
            token = node.children[0]
            assert isinstance(token, Token)
            try:
                name = normalize_tag(str(token))
            except BadTag as exc:
                column = token.column or 0
                raise SegmentError(f"{_where(expr, column)}: {exc}", column) from None
            return Tag(name, node.meta.column)
        if kind == "age":
            field, op, duration, *anchored = (str(child) for child in node.children)
            amount, unit = int(duration[:-1]), duration[-1].lower()
            span = UNITS[unit] * amount if amount < 10**6 else MAX_DURATION * 2
            if span > MAX_DURATION:
                token = node.children[2]
                column = token.column if isinstance(token, Token) and token.column else 0
                raise SegmentError(f"{_where(expr, column)}: {duration} is over 100 years", column)
            anchor = _instant(anchored[0]) if anchored else None
            return Age(field.lower(), op, span, node.meta.column, anchor)
        if kind == "negation":
            return Not(build(node.children[0]))
        parts = tuple(build(child) for child in node.children)
        return All(parts) if kind == "and_expr" else Any(parts)

    return build(tree)


def _wanted(names: Collection[str]) -> str:
    shown = sorted({_EXPECTED.get(name, repr(name.lower())) for name in names})
    if not shown:
        return "something else"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def tags_of(node: Node) -> list[Tag]:
    """Every tag the expression names, in the order written."""
    if isinstance(node, Tag):
        return [node]
    if isinstance(node, Age):
        return []
    if isinstance(node, Not):
        return tags_of(node.inner)
    return [tag for part in node.parts for tag in tags_of(part)]


def _instant(text: str) -> datetime:
    """An anchor's instant ("@2026-12-07T12:00:00Z"), aware UTC."""
    return datetime.fromisoformat(text[1:].replace("Z", "+00:00")).astimezone(UTC)


def _duration(span: timedelta) -> str:
    """A span in the largest unit that writes it whole (h, d or w)."""
    for unit in ("w", "d", "h"):
        amount, rest = divmod(span, UNITS[unit])
        if not rest:
            return f"{amount}{unit}"
    raise ValueError(f"{span} is not a whole number of hours")


def to_text(node: Node) -> str:
    """The expression of a tree (compound parts in parentheses), parsed back to the same."""
    if isinstance(node, Tag):
        return f"tag:{node.name}"
    if isinstance(node, Age):
        anchor = ""
        if node.anchor is not None:
            anchor = "@" + node.anchor.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"{node.field}{node.op}{_duration(node.span)}{anchor}"
    if isinstance(node, Not):
        inner = to_text(node.inner)
        return f"not ({inner})" if isinstance(node.inner, All | Any) else f"not {inner}"
    word = " and " if isinstance(node, All) else " or "
    return word.join(
        f"({to_text(part)})" if isinstance(part, All | Any) else to_text(part)
        for part in node.parts
    )


def anchor(node: Node, now: datetime) -> Node:
    """The tree with every relative age anchored at `now` (anchored ones kept)."""
    if isinstance(node, Tag):
        return node
    if isinstance(node, Age):
        return node if node.anchor is not None else replace(node, anchor=now)
    if isinstance(node, Not):
        return Not(anchor(node.inner, now))
    parts = tuple(anchor(part, now) for part in node.parts)
    return All(parts) if isinstance(node, All) else Any(parts)


def anchored(expr: str, now: datetime) -> str:
    """`expr` with its relative ages resolved at `now` ("" stays "": everyone)."""
    if not expr.strip():
        return ""
    return to_text(anchor(parse(expr), now.replace(microsecond=0)))
