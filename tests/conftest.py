"""Shared fixtures: a real newsletter folder with its own SQLite file in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import load_settings, write_default_config
from newsletter.store import Store
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "000_aa5f1ebe7ebc93f7.txt"


@pytest.fixture
def seed_path() -> Path:
    if not SEED.exists():
        pytest.skip(f"the seed article is not beside the repo: {SEED}")
    return SEED


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder made by `newsletter init`: newsletter.toml, issues/, outbox/."""
    write_default_config(tmp_path)
    return tmp_path


@pytest.fixture
def settings(folder: Path):
    return load_settings(folder / "newsletter.toml", env={})


@pytest.fixture
def store(settings):
    store = Store(settings.database_url)
    yield store
    store.close()


def run_cli(
    args: list[str], cwd: Path, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run the real `newsletter` command in a subprocess, as a user would."""
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "newsletter.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path
