"""A new newsletter folder, as `newsletter init` makes it: newsletter.toml (never over an
existing one), issues/, outbox/ and the database; with the sample, the bundled articles
queued and the sample subscribers imported, so a first `run` has something to send."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from newsletter import publish
from newsletter.resources import sample_articles, sample_subscribers
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import import_csv


@dataclass(frozen=True, kw_only=True)
class NewFolder:
    config: Path
    queued: list[str] = field(default_factory=list)  # the sample articles' file names
    subscribers: int | None = None  # sample subscribers imported (None: no sample)


def create_folder(folder: Path, *, sample: bool = False) -> NewFolder:
    config = write_default_config(folder)
    settings = load_settings(config)
    store = Store(settings.database_url)
    try:
        if not sample:
            return NewFolder(config=config)
        queued = []
        for article in sample_articles():
            publish.queue_add(store, settings, article)
            queued.append(article.name)
        imported = import_csv(store, sample_subscribers()).imported
        return NewFolder(config=config, queued=queued, subscribers=imported)
    finally:
        store.close()
