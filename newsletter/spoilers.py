"""Find sentences that reach the inbox before the reader opts in and give the ending away.

Everything a subscriber sees without choosing to read the ending (subject, preheader, recap
teaser, card texts) is compared with the spoiler sections of the same article. A sentence is
flagged when it shares a *distinctive* phrase with them: a run of three or more content words
(stopwords dropped, words lower-cased, accents, possessives and plural/-ed/-ing endings
folded) that also appears in a spoiler section. Each word of a shared phrase is weighted by
how rare it is in the article's spoiler-free world (title, summary, the non-spoiler
sections), leaving out the inbox sentence itself: a word used nowhere else outside the
spoilers weighs 1, one used in n other safe sentences 1/(n+1). Character names and the film's
setting appear everywhere and weigh almost nothing; a phrase that also occurs as a whole in
the safe text weighs nothing. A sentence is flagged when one shared phrase weighs at least
`THRESHOLD` (by default two words found nowhere else but in the spoilers, or one plus two
rarely used ones).

Pure and fast: no I/O, one pass over the article's sentences, dictionaries of word triples.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter.articles import Article, Section
from newsletter.teaser import split_sentences

SHINGLE = 3
THRESHOLD = 2.0

# Function words, plus the vocabulary every "ending explained" piece uses about itself: they
# carry no information about *this* ending.
STOPWORDS = frozenset(
    """
    a about above after again against all almost also although always am among an and another
    any are aren't around as at back be became because become been before being below between
    both but by can cannot could couldn't did didn't do does doesn't doing don't down during
    each either else even ever every few for from further get gets getting go goes going got
    had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
    him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its
    itself just last least less let's like made make makes many may me might more most much
    must mustn't my myself never no nor not now of off often on once one only onto or other
    ought our ours ourselves out over own per quite rather really same seem seems shan't she
    she'd she'll she's should shouldn't since so some still such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this
    those though through thus to too toward towards under until up upon us very via was wasn't
    way we we'd we'll we're we've well were weren't what what's when when's where where's
    whether which while who who's whom whose why why's will with within without won't would
    wouldn't yet you you'd you'll you're you've your yours yourself yourselves
    audience character characters director ending endings film films final movie movies
    narrative plot scene scenes story viewer viewers
    """.split()
)

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


@dataclass(frozen=True)
class InboxText:
    """A text a subscriber sees before choosing to read the ending, and where it shows."""

    where: str
    text: str


@dataclass(frozen=True)
class SpoilerLeak:
    """An inbox sentence that echoes a spoiler section: where it shows, the shared phrase (in
    the sentence's own words), and the spoiler section, line and sentence it echoes."""

    path: Path
    where: tuple[str, ...]
    sentence: str
    phrase: str
    section: str
    line: int
    echoed: str
    weight: float

    @property
    def message(self) -> str:
        shown = ", ".join(self.where)
        return (
            f"{shown}: {self.sentence!r} gives away the ending: {self.phrase!r} echoes "
            f"{self.section!r} (line {self.line}): {self.echoed!r}"
        )


@dataclass(frozen=True)
class _Word:
    norm: str
    start: int
    end: int


@dataclass(frozen=True)
class _SpoilerSentence:
    section: str
    line: int
    text: str


def normalize(word: str) -> str:
    """Lower-case, fold accents and curly apostrophes, drop possessives and the commonest
    inflections, so "Beating", "beats" and "beat" meet."""
    word = unicodedata.normalize("NFKD", word.lower().replace("\u2019", "'"))
    word = "".join(c for c in word if not unicodedata.combining(c))
    if word.endswith("'s"):
        word = word[:-2]
    word = word.rstrip("'")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> list[_Word]:
    """The words of `text` that carry meaning, with their places in the text."""
    words = []
    for match in _WORD.finditer(text):
        raw = match.group().lower().replace("\u2019", "'")
        if raw in STOPWORDS:
            continue
        norm = normalize(match.group())
        if norm in STOPWORDS or (len(norm) < 2 and not norm.isdigit()):
            continue
        words.append(_Word(norm, match.start(), match.end()))
    return words


def shingles(words: Sequence[_Word], size: int = SHINGLE) -> list[tuple[str, ...]]:
    return [tuple(w.norm for w in words[i : i + size]) for i in range(len(words) - size + 1)]


def sentences_of(section: Section) -> list[tuple[int, str]]:
    """(file line, sentence) for each sentence of a section."""
    paragraphs = section.text.split("\n\n")
    lines = section.lines if len(section.lines) == len(paragraphs) else ()
    found = []
    for k, paragraph in enumerate(paragraphs):
        line = lines[k] if lines else section.line
        found += [(line, s) for s in split_sentences(" ".join(paragraph.split()))]
    return found


def find_leaks(
    article: Article,
    inbox: Iterable[InboxText],
    spoilers: Sequence[Section],
    *,
    safe: Sequence[Section] | None = None,
    threshold: float = THRESHOLD,
) -> list[SpoilerLeak]:
    """The inbox sentences of `article` that share a distinctive phrase with `spoilers`.

    `safe` are the article's spoiler-free sections (default: every section not in
    `spoilers`); with the title and summary they are the background that decides what is
    distinctive."""
    spoiler_ids = {id(s) for s in spoilers}
    if safe is None:
        safe = [s for s in article.sections if id(s) not in spoiler_ids]

    index: dict[tuple[str, ...], list[_SpoilerSentence]] = {}
    for section in spoilers:
        for line, sentence in sentences_of(section):
            for gram in set(shingles(content_words(sentence))):
                index.setdefault(gram, []).append(_SpoilerSentence(section.heading, line, sentence))
    if not index:
        return []

    background: list[tuple[tuple[str, ...], set[tuple[str, ...]]]] = []
    units = [article.title, article.summary or ""]
    units += [sentence for section in safe for _, sentence in sentences_of(section)]
    for unit in units:
        norms = tuple(w.norm for w in content_words(unit))
        if norms:
            background.append((norms, set(shingles_of_norms(norms))))

    leaks: dict[str, SpoilerLeak] = {}
    places: dict[str, list[str]] = {}
    for item in inbox:
        for sentence in split_sentences(" ".join(item.text.split())):
            key = " ".join(w.norm for w in content_words(sentence))
            if key in places:
                if item.where not in places[key]:
                    places[key].append(item.where)
                continue
            leak = _sentence_leak(article.path, sentence, index, background, threshold)
            if leak is not None:
                leaks[key] = leak
                places[key] = [item.where]
    return [
        SpoilerLeak(
            path=leak.path,
            where=tuple(places[key]),
            sentence=leak.sentence,
            phrase=leak.phrase,
            section=leak.section,
            line=leak.line,
            echoed=leak.echoed,
            weight=leak.weight,
        )
        for key, leak in leaks.items()
    ]


def shingles_of_norms(norms: Sequence[str], size: int = SHINGLE) -> list[tuple[str, ...]]:
    return [tuple(norms[i : i + size]) for i in range(len(norms) - size + 1)]


def _contains(longer: Sequence[str], shorter: Sequence[str]) -> bool:
    if not shorter or len(shorter) > len(longer):
        return False
    first = shorter[0]
    for i in range(len(longer) - len(shorter) + 1):
        if longer[i] == first and tuple(longer[i : i + len(shorter)]) == tuple(shorter):
            return True
    return False


def _sentence_leak(
    path: Path,
    sentence: str,
    index: dict[tuple[str, ...], list[_SpoilerSentence]],
    background: list[tuple[tuple[str, ...], set[tuple[str, ...]]]],
    threshold: float,
) -> SpoilerLeak | None:
    words = content_words(sentence)
    grams = shingles(words)
    shared = [i for i, gram in enumerate(grams) if gram in index]
    if not shared:
        return None
    norms = tuple(w.norm for w in words)
    # The sentence's own copies in the safe text (the teaser *is* a recap sentence, maybe cut
    # short) are not "elsewhere": leave them out of the background.
    others = [
        (unit, unit_grams)
        for unit, unit_grams in background
        if not (_contains(unit, norms) or _contains(norms, unit))
    ]
    seen_in: Counter[str] = Counter()
    for unit, _ in others:
        seen_in.update(set(unit))
    safe_grams = set().union(*(g for _, g in others)) if others else set()

    def weight(gram: tuple[str, ...]) -> float:
        if gram in safe_grams:
            return 0.0
        return sum(1.0 / (1 + seen_in[w]) for w in gram)

    best = max(shared, key=lambda i: weight(grams[i]))
    best_weight = weight(grams[best])
    if best_weight < threshold:
        return None
    # Grow the phrase over neighbouring shared triples for a readable report.
    first = last = best
    while first - 1 in shared and weight(grams[first - 1]) > 0:
        first -= 1
    while last + 1 in shared and weight(grams[last + 1]) > 0:
        last += 1
    phrase = sentence[words[first].start : words[last + SHINGLE - 1].end]
    echoed = index[grams[best]][0]
    return SpoilerLeak(
        path=path,
        where=(),
        sentence=sentence,
        phrase=phrase,
        section=echoed.section,
        line=echoed.line,
        echoed=echoed.text,
        weight=round(best_weight, 2),
    )
