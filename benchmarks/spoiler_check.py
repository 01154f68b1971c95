"""How long the editorial checks take: the spoiler-leak detector and the article contract on
the seed article, and the leak detector on a long synthetic article.

    .venv/bin/python benchmarks/spoiler_check.py [--repeat N] [--paragraphs N]

Prints figures only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from newsletter.articles import read_article
from newsletter.conformance import validate_file
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.spoilers import InboxText, find_leaks
from newsletter.teaser import recap_teaser

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_aa5f1ebe7ebc93f7.txt"
WORDS = (
    "harbour lantern engineer island storm ledger orchard letter sister brother quarry "
    "police truck border hives greenhouse radio station hurricane caller debt secret "
    "confession keeper automation mainland ferry winter harvest smuggler garage desert"
).split()


def synthetic(paragraphs: int, seed: int = 7) -> str:
    """An article with `paragraphs` paragraphs in each section, from a small vocabulary (so
    plenty of shared triples to weigh)."""
    rng = random.Random(seed)

    def paragraph() -> str:
        sentences = []
        for _ in range(5):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
            sentences.append(" ".join(words).capitalize() + ".")
        return " ".join(sentences)

    parts = ["A Long Film (2020): Ending Explained", "A summary.", "Release Year: 2020", ""]
    for rule in DEFAULT_CONTRACT.sections:
        parts.append(rule.heading)
        parts += [paragraph() for _ in range(paragraphs)]
    return "\n".join(parts) + "\n"


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, max(times) * 1000


def leak_check(path: Path):
    article = read_article(path)
    inbox = [InboxText("subject", article.title), InboxText("teaser", recap_teaser(article))]
    inbox += [
        InboxText(s.heading, s.text) for s in DEFAULT_CONTRACT.safe_sections(article.sections)
    ]
    return lambda: find_leaks(article, inbox, DEFAULT_CONTRACT.spoiler_sections(article.sections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--paragraphs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        long_path = Path(tmp) / "long.txt"
        long_path.write_text(synthetic(args.paragraphs), encoding="utf-8")
        cases = [("seed", SEED), (f"synthetic, {args.paragraphs} paragraphs/section", long_path)]
        for name, path in cases:
            if not path.exists():
                print(f"{name}: {path} not found, skipped")
                continue
            words = len(path.read_text(encoding="utf-8").split())
            median, worst = timed(leak_check(path), args.repeat)
            print(
                f"leak check   {name} ({words} words): median {median:.2f} ms, max {worst:.2f} ms"
            )
            median, worst = timed(lambda p=path: validate_file(p), args.repeat)
            print(
                f"contract     {name} ({words} words): median {median:.2f} ms, max {worst:.2f} ms"
            )


if __name__ == "__main__":
    main()
