"""`newsletter serve` as a real subprocess (issue 25, point 4 and security 10): redirects that
stay where it listens, the addresses it prints, the line when base_url is another loopback
port, no webhook warning for the outbox, and X-Forwarded-For believed only from
`[web] forwarded_allow_ips`."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from newsletter.settings import write_default_config
from tests.conftest import run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(folder: Path, port: int, env: dict | None = None):
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
    }
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter.cli", "serve", "--port", str(port)],
        cwd=folder,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(port: int, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_serve_on_another_port_keeps_visitors_there_and_says_so(tmp_path):
    write_default_config(tmp_path)  # base_url http://127.0.0.1:8000, the outbox provider
    port = _free_port()
    with serving(tmp_path, port) as proc:
        home = _get(port, "/")
        assert home.status == 303 and home.headers["Location"] == "/subscribe"
        slash = _get(port, "/archive/")
        assert slash.status == 307 and slash.headers["Location"] == "/archive"
        assert _get(port, "/subscribe").status == 200
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    here = f"http://127.0.0.1:{port}"
    assert f"{here}/subscribe" in out and f"{here}/archive" in out and f"{here}/admin" in out
    warning = [line for line in out.splitlines() if line.startswith("warning: base_url")]
    assert len(warning) == 1 and "http://127.0.0.1:8000" in warning[0] and here in warning[0]
    # The outbox needs no webhook key: no word about it.
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" not in err + out


def test_serve_on_base_urls_port_has_no_warning_and_help_names_admin(tmp_path):
    write_default_config(tmp_path)
    port = _free_port()
    env = {"NEWSLETTER_BASE_URL": f"http://localhost:{port}"}
    with serving(tmp_path, port, env) as proc:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "workspace:" in out and "warning" not in out
    help_text = run_cli(["serve", "--help"], tmp_path).stdout
    assert "/admin" in help_text


def test_the_webhook_key_warning_is_for_sendgrid_only(tmp_path):
    write_default_config(tmp_path)
    port = _free_port()
    env = {"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_KEY": "SG.test"}
    with serving(tmp_path, port, env) as proc:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in err


def test_forwarded_for_is_believed_only_from_the_configured_proxies(tmp_path):
    write_default_config(tmp_path)
    forged = {"X-Forwarded-For": "203.0.113.77"}
    port = _free_port()
    with serving(tmp_path, port) as proc:  # default: 127.0.0.1 is the trusted proxy
        assert _get(port, "/subscribe", forged).status == 200
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        log = out + err
    assert "203.0.113.77" in log  # the access log names the forwarded client
    config = tmp_path / "newsletter.toml"
    text = config.read_text()
    assert 'forwarded_allow_ips = "127.0.0.1"' in text  # `init` writes the setting
    config.write_text(text.replace('"127.0.0.1"', '"10.9.8.7"'))
    port = _free_port()
    with serving(tmp_path, port) as proc:
        assert _get(port, "/subscribe", forged).status == 200
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        log = out + err
    assert "203.0.113.77" not in log and "127.0.0.1:" in log.split("workspace:")[-1]
