"""Subscriber imports off the request (issue 25, security 4), against a real `newsletter serve`
subprocess over HTTP: the upload answers 303 at once and the progress page reaches the
outcome; public sign-ups answer while a large import runs; a serve killed with SIGKILL in the
middle of an import resumes it at its next start, exactly; a bad file is refused with its
errors located and nothing imported; an upload over the limit is refused with 413. Plus the
library's own rules on a real SQLite file (the attempts limit, the leftovers swept)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from newsletter.editors import add_editor
from newsletter.imports import (
    MAX_ATTEMPTS,
    ImportWorker,
    imports_folder,
    job_file,
    new_upload,
    queue_import,
    recover,
)
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.store.imports import ImportState
from newsletter.subscribers import add_subscriber
from newsletter.web.admin.imports import BODY_LIMIT_IMPORT
from tests.test_admin_http import multipart
from tests.test_serve import _free_port

PASSWORD = "correct horse battery"


def _csv(rows: int, start: int = 0) -> bytes:
    return b"email,name\n" + b"".join(
        f"reader{i:07d}@example.com,Reader {i}\n".encode() for i in range(start, start + rows)
    )


class Client:
    """Signed-in HTTP to the serve subprocess: a cookie jar, the CSRF token of a page."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for header in response.headers.get_all("set-cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value.strip('"'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        conn.close()
        return response.status, dict(response.headers), text

    def token(self, path: str) -> str:
        status, _, text = self.request("GET", path)
        assert status == 200, text[:300]
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert match, text[:300]
        return match.group(1)

    def sign_in(self) -> None:
        fields = {
            "csrf_token": self.token("/admin/login"),
            "email": "ed@example.com",
            "password": PASSWORD,
        }
        status, _, _ = self.request(
            "POST",
            "/admin/login",
            urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 303

    def upload(self, name: str, content: bytes) -> tuple[int, dict, str]:
        body, content_type = multipart(
            {"csrf_token": self.token("/admin/subscribers")}, {"file": (name, content)}
        )
        return self.request(
            "POST", "/admin/subscribers/import", body, {"Content-Type": content_type}
        )

    def job(self, location: str) -> dict:
        status, _, text = self.request("GET", location + ".json")
        assert status == 200, text[:300]
        return json.loads(text)

    def wait(self, location: str, until, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(location)
            if until(job):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)


def finished(job: dict) -> bool:
    return job["state"] in ("done", "failed")


@contextmanager
def serving(folder: Path, port: int):
    """`newsletter serve` in a child process, its output in files (a pipe nobody reads would
    fill up with the access log and stop the server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["NEWSLETTER_BASE_URL"] = f"http://127.0.0.1:{port}"
    with open(folder / "serve.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter.cli", "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (folder / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
                break
            except OSError:
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    write_default_config(tmp_path)
    store = Store(load_settings(tmp_path / "newsletter.toml", env={}).database_url)
    add_editor(store, "ed@example.com", PASSWORD)
    store.close()
    return tmp_path


def open_store(folder: Path) -> Store:
    return Store(load_settings(folder / "newsletter.toml", env={}).database_url)


def test_an_upload_is_answered_at_once_and_its_page_reaches_the_outcome(folder):
    store = open_store(folder)
    add_subscriber(store, "reader0000001@example.com", "Known")  # updated (same status)
    add_subscriber(store, "reader0000002@example.com")
    store.subscribers.suppress("reader0000002@example.com", "unsubscribed")  # skipped
    port = _free_port()
    with serving(folder, port):
        client = Client(port)
        client.sign_in()
        status, headers, _ = client.upload("list.csv", _csv(12))
        assert status == 303
        location = headers["location"]
        assert re.fullmatch(r"/admin/subscribers/imports/\d+", location)
        job = client.wait(location, finished)
        assert job == {
            "state": "done",
            "rows_total": 12,
            "rows_done": 12,
            "added": 10,
            "updated": 1,
            "skipped": 1,
        }
        status, _, page = client.request("GET", location)
        assert status == 200
        assert "Done: 12 rows imported from list.csv: added 10, updated 1, skipped 1" in page
        assert "list.csv:line 4: reader0000002@example.com: unsubscribed" in page
        assert "data-live-import" not in page  # a finished import's page stays still
        status, _, listing = client.request("GET", "/admin/subscribers")
        assert f'href="{location}">list.csv</a>' in listing
    assert len(list(store.subscribers.each())) == 12
    assert store.subscribers.by_email("reader0000002@example.com").status == "unsubscribed"
    uploads = folder / "newsletter.db-imports"
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o700
    assert list(uploads.iterdir()) == []  # the kept upload is removed when done
    store.close()


def test_a_bad_file_is_refused_with_located_errors_and_nothing_imported(folder):
    port = _free_port()
    with serving(folder, port):
        client = Client(port)
        client.sign_in()
        # Not a subscriber list: refused at the upload, naming the file and line; no job.
        status, _, page = client.upload("people.csv", b"address;name\nann@example.com;Ann\n")
        assert status == 400
        assert "people.csv:1: no &#39;email&#39; column in the header" in page
        assert "newsletter.db-imports" not in page  # the kept file's path is not shown
        # Bad rows: queued (the whole file is checked off the request), then refused whole.
        rows = _csv(30).replace(b"reader0000007@example.com", b"reader7-at-example.com")
        rows += b"READER0000003@example.com,Again\n"
        status, headers, _ = client.upload("list.csv", rows)
        assert status == 303
        job = client.wait(headers["location"], finished)
        assert job["state"] == "failed" and job["rows_done"] == job["added"] == 0
        _, _, page = client.request("GET", headers["location"])
        assert "list.csv: 2 of 31 rows have a problem; nothing was imported" in page
        assert "list.csv:line 9: reader7-at-example.com: invalid address" in page
        assert "list.csv:line 32: READER0000003@example.com: duplicate of line 5" in page
        status, _, _ = client.upload("empty.csv", b"email,name\n")
        assert status == 400
    store = open_store(folder)
    assert store.subscribers.count() == 0
    assert [j.state for j in store.imports.recent()] == [ImportState.FAILED]
    assert list((folder / "newsletter.db-imports").iterdir()) == []
    store.close()


def test_an_upload_over_the_limit_is_refused_with_413(folder):
    port = _free_port()
    with serving(folder, port):
        client = Client(port)
        client.sign_in()
        token = client.token("/admin/subscribers")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.putrequest("POST", "/admin/subscribers/import")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(BODY_LIMIT_IMPORT + 1))
        conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in client.cookies.items()))
        conn.endheaders()
        conn.send(
            f'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}'.encode()
        )
        response = conn.getresponse()
        page = response.read().decode()
        conn.close()
    assert response.status == 413
    assert "larger than 64 MB, the most the workspace imports at once" in page
    assert "newsletter subscribers import FILE" in page
    store = open_store(folder)
    assert store.imports.recent() == []
    assert list((folder / "newsletter.db-imports").iterdir()) == []
    store.close()


def test_sign_ups_answer_while_a_large_import_runs(folder):
    port = _free_port()
    with serving(folder, port):
        client = Client(port)
        client.sign_in()
        status, headers, _ = client.upload("big.csv", _csv(60_000))
        assert status == 303
        location = headers["location"]
        client.wait(location, lambda job: job["state"] == "running" and job["rows_done"] > 0)
        answers = []
        for n in range(3):
            public = Client(port)
            answers.append(
                public.request(
                    "POST",
                    "/subscribe",
                    urlencode({"email": f"signup{n}@example.org"}).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"},
                )[0]
            )
        during = client.job(location)
        job = client.wait(location, finished)
    assert answers == [200, 200, 200]
    assert during["state"] == "running", "the import ended before the sign-ups: make it larger"
    assert job["state"] == "done" and job["added"] == 60_000
    store = open_store(folder)
    assert store.subscribers.count(None) == 60_003
    assert store.subscribers.count("unconfirmed") == 3
    store.close()


def test_a_serve_killed_during_an_import_resumes_it_at_the_next_start(folder):
    port = _free_port()
    rows = 60_000
    with serving(folder, port) as proc:
        client = Client(port)
        client.sign_in()
        status, headers, _ = client.upload("big.csv", _csv(rows))
        assert status == 303
        location = headers["location"]
        before = client.wait(location, lambda j: j["state"] == "running" and j["rows_done"] > 0)
        kept = job_file(folder / "newsletter.db-imports", int(location.rsplit("/", 1)[1]))
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    store = open_store(folder)
    (job,) = store.imports.recent()
    assert job.state == ImportState.RUNNING and 0 < job.rows_done < rows, job
    assert job.rows_done >= before["rows_done"]
    assert store.subscribers.count() == job.added  # each chunk committed with its count
    port = _free_port()
    with serving(folder, port):
        client = Client(port)
        client.sign_in()
        after = client.wait(location, finished)
        _, _, page = client.request("GET", location)
    assert after == {
        "state": "done",
        "rows_total": rows,
        "rows_done": rows,
        "added": rows,
        "updated": 0,
        "skipped": 0,
    }
    assert "Done: 60000 rows imported" in page
    assert store.subscribers.count() == rows
    resumed = store.imports.get(job.id)
    assert resumed.attempts == 2
    assert not kept.exists()
    assert "was left running by" in (folder / "serve.log").read_text()
    store.close()


# -- the library on a real SQLite file ---------------------------------------------------------
def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _queued(store: Store, folder: Path, content: bytes) -> int:
    descriptor, path = new_upload(folder)
    os.write(descriptor, content)
    os.close(descriptor)
    return queue_import(store, folder, path, editor="ed@example.com", filename="list.csv")


def test_a_job_that_keeps_stopping_the_server_fails_with_the_reason(folder):
    store = open_store(folder)
    settings = load_settings(folder / "newsletter.toml", env={})
    uploads = imports_folder(settings)
    job_id = _queued(store, uploads, _csv(5))
    claimed = store.imports.claim_next("elsewhere:1")
    assert claimed is not None and claimed.id == job_id
    # Started MAX_ATTEMPTS times by a process of this machine that is now gone.
    from sqlalchemy import update

    from newsletter.store.schema import import_jobs

    with store.transaction() as conn:
        conn.execute(
            update(import_jobs).values(
                worker=f"{os.uname().nodename}:{_gone_pid()}", attempts=MAX_ATTEMPTS
            )
        )
    assert recover(store, uploads) == [job_id]
    job = store.imports.get(job_id)
    assert job.state == ImportState.FAILED
    assert f"the server stopped during this import {MAX_ATTEMPTS} times" in job.messages[0]
    assert not job_file(uploads, job_id).exists()
    assert store.subscribers.count() == 0
    store.close()


def test_one_job_at_a_time_and_a_live_workers_job_is_left_alone(folder):
    store = open_store(folder)
    uploads = imports_folder(load_settings(folder / "newsletter.toml", env={}))
    first = _queued(store, uploads, _csv(3))
    second = _queued(store, uploads, _csv(3, start=3))
    live = f"{os.uname().nodename}:{os.getppid()}"  # pytest's parent: alive
    assert store.imports.claim_next(live).id == first
    assert store.imports.claim_next("other:2") is None  # one is running
    assert recover(store, uploads, at_start=True) == []  # its process is alive
    assert store.imports.get(first).state == ImportState.RUNNING
    # Stopping between chunks queues it again without counting an attempt.
    worker = ImportWorker(store, uploads, chunk=1, poll=0.05)
    store.imports.requeue(first, attempt=False)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not all(store.imports.get(j).finished for j in (first, second)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
    assert [store.imports.get(j).added for j in (first, second)] == [3, 3]
    assert store.imports.get(first).attempts == 1
    assert store.subscribers.count() == 6
    assert list(uploads.iterdir()) == []
    store.close()
