"""`folder.create_folder`, what `newsletter init` stands on: the files, the database and
the sample, reported as made (the command's output is tests/test_cli.py's)."""

from __future__ import annotations

import pytest

from newsletter.exceptions import ConfigError
from newsletter.folder import create_folder
from newsletter.resources import sample_articles
from newsletter.settings import load_settings
from newsletter.store import Store


def test_a_new_folder_with_the_sample_has_its_articles_queued_and_readers(tmp_path):
    made = create_folder(tmp_path / "letter", sample=True)
    assert made.config == tmp_path / "letter" / "newsletter.toml"
    assert made.queued == [path.name for path in sample_articles()]
    settings = load_settings(made.config, env={})
    store = Store(settings.database_url)
    try:
        assert [row.filename for row in store.articles.queued()] == made.queued
        assert made.subscribers == store.subscribers.count() > 0
    finally:
        store.close()
    assert all((tmp_path / "letter" / "issues" / name).exists() for name in made.queued)


def test_a_bare_folder_has_no_sample_and_an_existing_one_is_refused(tmp_path):
    made = create_folder(tmp_path)
    assert made.queued == [] and made.subscribers is None
    assert (tmp_path / "issues").is_dir() and (tmp_path / "outbox").is_dir()
    with pytest.raises(ConfigError, match="already exists"):
        create_folder(tmp_path, sample=True)
