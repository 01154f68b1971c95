"""A real install, the way a user gets one: build the wheel from this checkout, install it into a
fresh virtual environment, and run the main commands from a folder that has nothing of the repo.

This is what an editable install hides: files read from outside the package (the built-in
templates, the sample, web templates, migrations) must be inside the wheel. It takes about 45 s,
almost all of it pip installing the dependencies (from its cache after the first run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
NOT_SOURCE = ("*.egg-info", "__pycache__", ".venv", ".git", "node_modules", "build", "dist", "demo")


def _run(args: list, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def _refused(args: list, cwd: Path, env: dict[str, str]) -> str:
    """A command that must fail with one line for the user (exit 1, no traceback)."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def _clean_env(venv: Path) -> dict[str, str]:
    """The user's environment: none of ours, and nothing that points back at this checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSLETTER_", "SENDGRID_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout (so the build leaves nothing in the repo)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    dist = work / "dist"
    # The test environment has setuptools: building without isolation skips fetching it again.
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*args, "--wheel-dir", dist, source], work, dict(os.environ))
    (built,) = dist.glob("newsletter-*.whl")
    return built


def test_every_subpackage_and_data_file_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # Subpackages are listed by hand in pyproject.toml (two of them are mapped from top-level
    # folders); a new one that is not listed would be missing from every real install.
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set(find_packages(str(REPO), include=["newsletter", "newsletter.*"]))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    runtime_files = [
        p
        for p in (REPO / "newsletter").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert runtime_files, "the package has data files (web templates, migrations, contract)"
    for path in runtime_files:
        assert path.relative_to(REPO).as_posix() in names, f"{path} is not in the wheel"
    for path in (REPO / "templates").iterdir():
        if path.suffix in (".j2", ".css"):
            assert f"newsletter/_templates/{path.name}" in names
    # issues/ holds what an editor's folder holds, articles only; the sample subscribers are
    # package data (the same list `init --sample` imports).
    sample = sorted(p.name for p in (REPO / "issues").iterdir())
    assert sample and all(name.endswith((".txt", ".md")) for name in sample), sample
    for name in sample:
        assert f"newsletter/_sample/{name}" in names
    assert "newsletter/sample_subscribers.csv" in names
    assert not any(n.startswith("newsletter/_sample/") and n.endswith(".py") for n in names)


def test_wheel_in_a_fresh_venv_runs_init_run_check_and_serve(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, dict(os.environ))
    env = _clean_env(venv)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--no-compile", wheel], tmp_path, env, timeout=600)
    newsletter = venv / "bin" / "newsletter"
    site = tmp_path / "site"
    site.mkdir()

    out = _run([newsletter, "init", "--sample"], site, env)
    assert "queued 001_the-lighthouse-keepers-daughter.txt" in out
    assert "imported 4 sample subscribers" in out
    # The sample queue holds articles only: the package's own files are not queued.
    assert sorted(p.name for p in (site / "issues").iterdir()) == [
        "001_the-lighthouse-keepers-daughter.txt",
        "002_static-over-galveston.txt",
        "003_the-orchard-accounts.md",
    ]

    out = _run([newsletter, "run", "--once"], site, env)
    assert "sent 4, failed 0" in out
    emails = sorted((site / "outbox").rglob("*.eml"))
    assert len(emails) == 4
    message = BytesParser(policy=policy.default).parsebytes(emails[0].read_bytes())
    assert message["Subject"] == "The Lighthouse Keeper's Daughter (2019): Ending Explained"
    html = message.get_body(("html",)).get_content()
    assert "Skerry Point" in html and "Spoilers below" in html

    out = _run([newsletter, "check", site / "issues" / "002_static-over-galveston.txt"], site, env)
    assert "0 errors" in out

    # A plain install leaves the optional parts out; each feature that needs one names it.
    for module in ("selenium", "PIL", "psycopg", "fastjsonschema"):
        found = _run(
            [python, "-c", f"import importlib.util as u; print(u.find_spec({module!r}))"], site, env
        )
        assert found.strip() == "None", f"{module} is installed by a plain install"
    article = site / "issues" / "002_static-over-galveston.txt"
    said = _refused([newsletter, "preview", "--screenshot", article], site, env)
    assert (
        "preview --screenshot needs the screenshots extra: pip install 'newsletter[screenshots]'"
        in said
    )
    postgres = {**env, "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://editor:pw@127.0.0.1/news"}
    said = _refused([newsletter, "queue", "list"], site, postgres)
    assert "needs the postgres extra: pip install 'newsletter[postgres]'" in said
    assert "postgresql+psycopg://editor:***@127.0.0.1/news" in said and ":pw@" not in said
    said = _refused([newsletter, "sendgrid-server", "--port", "0"], site, env)
    assert "needs the testing extra: pip install 'newsletter[testing]'" in said

    port = _free_port()
    server = subprocess.Popen(
        [newsletter, "serve", "--port", str(port)],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 60
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive", timeout=5) as r:
                    page = (r.status, r.read().decode("utf-8"))
            except OSError:
                time.sleep(0.2)
        assert page is not None, "serve never answered"
        assert page[0] == 200
        assert "Lighthouse Keeper" in page[1]  # the issue just sent is in the archive
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
