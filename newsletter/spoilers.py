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

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
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
    """A text a subscriber sees before choosing to read the ending, where it shows, and its
    line in the article file when it comes from one."""

    where: str
    text: str
    line: int | None = None


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
    # The sentence's own line in the file, when it comes from the article (a recap).
    sentence_line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.path}:{self.sentence_line}" if self.sentence_line else str(self.path)

    @property
    def message(self) -> str:
        shown = ", ".join(self.where)
        return (
            f"{self.sentence!r} (in the {shown}) gives the ending away: {self.phrase!r} "
            f"echoes {self.section!r} at line {self.line}: {self.echoed!r}"
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


@functools.lru_cache(maxsize=65536)
def normalize(word: str) -> str:
    """Lower-case, fold accents and curly apostrophes, drop possessives and the commonest
    inflections, so "Beating", "beats" and "beat" meet. Cached: prose repeats its words."""
    word = word.lower().replace("\u2019", "'")
    if not word.isascii():
        word = unicodedata.normalize("NFKD", word)
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
    """Every run of `size` consecutive content words, as normalized words."""
    return _triples([w.norm for w in words], size)


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

    units = [article.title, article.summary or ""]
    units += [sentence for section in safe for _, sentence in sentences_of(section)]
    background = _Background.of(units)

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
                leaks[key] = replace(leak, sentence_line=item.line)
                places[key] = [item.where]
    return [replace(leak, where=tuple(places[key])) for key, leak in leaks.items()]


@dataclass
class _Background:
    """The spoiler-free text as counts: in how many of its sentences each word and each word
    triple occurs. A sentence's own copies are subtracted when that sentence is weighed."""

    keys: list[str]
    words: list[frozenset[str]]
    grams: list[frozenset[tuple[str, ...]]]
    word_count: Counter[str]
    gram_count: Counter[tuple[str, ...]]

    @classmethod
    def of(cls, units: Iterable[str]) -> _Background:
        keys, words, grams = [], [], []
        for unit in units:
            norms = [w.norm for w in content_words(unit)]
            if norms:
                keys.append(f" {' '.join(norms)} ")
                words.append(frozenset(norms))
                grams.append(frozenset(_triples(norms)))
        word_count: Counter[str] = Counter()
        gram_count: Counter[tuple[str, ...]] = Counter()
        for unit_words, unit_grams in zip(words, grams, strict=True):
            word_count.update(unit_words)
            gram_count.update(unit_grams)
        return cls(keys, words, grams, word_count, gram_count)

    def without(self, norms: Sequence[str]) -> tuple[Counter[str], Counter[tuple[str, ...]]]:
        """The counts with every copy of the sentence `norms` left out, or of a part of it or
        a sentence it is part of: the teaser *is* a recap sentence, maybe cut short."""
        key = f" {' '.join(norms)} "
        copies = [i for i, unit in enumerate(self.keys) if key in unit or unit in key]
        if not copies:
            return self.word_count, self.gram_count
        word_count, gram_count = Counter(self.word_count), Counter(self.gram_count)
        for i in copies:
            word_count.subtract(self.words[i])
            gram_count.subtract(self.grams[i])
        return word_count, gram_count


def _triples(norms: Sequence[str], size: int = SHINGLE) -> list[tuple[str, ...]]:
    return [tuple(norms[i : i + size]) for i in range(len(norms) - size + 1)]


def _sentence_leak(
    path: Path,
    sentence: str,
    index: dict[tuple[str, ...], list[_SpoilerSentence]],
    background: _Background,
    threshold: float,
) -> SpoilerLeak | None:
    words = content_words(sentence)
    grams = shingles(words)
    shared = [i for i, gram in enumerate(grams) if gram in index]
    if not shared:
        return None
    seen_in, safe_grams = background.without([w.norm for w in words])

    def weight(gram: tuple[str, ...]) -> float:
        if safe_grams[gram] > 0:
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


def inbox_of(
    article: Article,
    safe: Sequence[Section],
    *,
    subject: str | None = None,
    preheader: str | None = None,
    teaser: str | None = None,
    card: str | None = None,
) -> list[InboxText]:
    """What a subscriber can read of `article` without opting in: the subject and preheader
    of the issue, the article's teaser or card, and its spoiler-free sections (in the email in
    the full layout, above the reveal on the article's page), paragraph by paragraph."""
    inbox = []
    for where, text in (("subject", subject), ("preheader", preheader), ("teaser", teaser)):
        if text:
            inbox.append(InboxText(where, text))
    if card:
        inbox.append(InboxText(card, article.title))
    for section in safe:
        paragraphs = section.text.split("\n\n")
        lines = section.lines if len(section.lines) == len(paragraphs) else ()
        for k, paragraph in enumerate(paragraphs):
            line = lines[k] if lines else section.line
            inbox.append(InboxText(section.heading, paragraph, line))
    return inbox
