"""Segments: who an issue goes to, written as a small expression and compiled to SQL.

    tag:films and not tag:paused      readers tagged films, and not paused
    joined<30d                        joined less than 30 days ago (joined>30d: longer ago)
    opened<90d                        opened an issue in the last 90 days (human opens only)
    (tag:films or tag:series) and opened<4w

Parsed by lark (an LALR grammar, not regular expressions) into a small typed tree, checked
(every tag must exist: a typo is an error naming its column, not an empty audience), then
compiled to one SQLAlchemy Core where-clause on `subscribers`. Units: h, d, w. `and` binds
tighter than `or`; `not` tighter than both. Keywords are case-insensitive.

`compile` is what planning uses: `store.issues.create_issue(audience=...)` hands the clause
to `store.deliveries.plan`, which adds the rule every issue keeps (active, not paused).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from newsletter.exceptions import BadTag, SegmentError
from newsletter.records import utcnow
from newsletter.store.schema import subscribers
from newsletter.tags import normalize_tag

if TYPE_CHECKING:
    from newsletter.store import Store

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
age: FIELD OP DURATION
FIELD: "joined"i | "opened"i
OP: "<" | ">"
DURATION: /[0-9]+[hdw]/i
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
            field, op, duration = (str(child) for child in node.children)
            amount, unit = int(duration[:-1]), duration[-1].lower()
            span = UNITS[unit] * amount if amount < 10**6 else MAX_DURATION * 2
            if span > MAX_DURATION:
                token = node.children[2]
                column = token.column if isinstance(token, Token) and token.column else 0
                raise SegmentError(f"{_where(expr, column)}: {duration} is over 100 years", column)
            return Age(field.lower(), op, span, node.meta.column)
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


# -- compiling -------------------------------------------------------------------------------
def compile(  # noqa: A001 - the name the planning code and the brief use
    expr: str, *, known_tags: Collection[str] | None = None, now: datetime | None = None
) -> ColumnElement[bool]:
    """The where-clause on `subscribers` of a segment. With `known_tags` (the store's tags),
    a tag not among them is a SegmentError at its column. An empty expression is everyone."""
    if not expr.strip():
        return true()
    node = parse(expr)
    if known_tags is not None:
        known = set(known_tags)
        for tag in tags_of(node):
            if tag.name not in known:
                listed = ", ".join(sorted(known)[:12]) or "none yet"
                raise SegmentError(
                    f"{_where(expr, tag.column)}: unknown tag {tag.name!r} (tags: {listed})",
                    tag.column,
                )
    return _sql(node, now or utcnow())


def _sql(node: Node, now: datetime) -> ColumnElement[bool]:
    if isinstance(node, Tag):
        # The tags' copy on the row (store/tags.py keeps it), not a join: one index scan.
        return subscribers.c.tag_text.contains(f" {node.name} ", autoescape=True)
    if isinstance(node, Age):
        since = now - node.span
        if node.field == "joined":
            column = subscribers.c.created_at
            return column > since if node.op == "<" else column <= since
        opened = subscribers.c.last_opened_at
        recent = and_(opened.is_not(None), opened > since)
        # opened>90d: not opened in the last 90 days, never opened included.
        return recent if node.op == "<" else not_(recent)
    if isinstance(node, Not):
        return not_(_sql(node.inner, now))
    clauses = [_sql(part, now) for part in node.parts]
    if isinstance(node, All):
        return and_(true(), *clauses)
    return or_(false(), *clauses)


def audience(store: Store, expr: str, *, setting: str = "") -> ColumnElement[bool] | None:
    """The compiled segment with the store's tags checked, None for everyone (empty).
    `setting` (e.g. "[issue] segment") goes in front of an error, to say where it is written."""
    if not expr.strip():
        return None
    try:
        return compile(expr, known_tags=store.tags.names())
    except SegmentError as exc:
        raise SegmentError(f"{setting}: {exc}" if setting else str(exc), exc.column) from None


def count(store: Store, expr: str) -> int:
    """How many subscribers an issue sent now would go to (active, not paused, in the
    segment): `newsletter segment count` and the workspace's live count."""
    return store.subscribers.count_receiving(audience(store, expr))


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """What tagging (or untagging) did: the tag as stored, how many subscribers changed."""

    tag: str
    changed: int


def tag_subscribers(store: Store, emails: Collection[str], tag: str) -> Tagged:
    """Give `tag` (held to the tag rule) to the subscribers `emails`: all of them, or none
    if one is unknown. `changed`: those who did not have it."""
    name = normalize_tag(tag)
    return Tagged(tag=name, changed=store.tags.tag(emails, name))


def untag_subscribers(store: Store, emails: Collection[str], tag: str) -> Tagged:
    """Take `tag` from the subscribers `emails`; the tag stays known, so segments naming it
    keep working. `changed`: those who had it."""
    name = normalize_tag(tag)
    return Tagged(tag=name, changed=store.tags.untag(emails, name))
