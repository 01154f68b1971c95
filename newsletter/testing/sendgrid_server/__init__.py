"""A local SendGrid-compatible server (v3 Mail Send) for tests, demos and benchmarks.

SendGrid cannot be reached from CI or from this machine, and a mock of the client would not
tell us whether our requests are acceptable to SendGrid. This server speaks real HTTP, so the
official `sendgrid` library runs end to end, and it enforces the official contract: Twilio's
OpenAPI file for ``POST /v3/mail/send`` (compiled once with fastjsonschema) plus the limits
SendGrid only states in prose, answering with SendGrid-shaped errors.

It also injects faults (429, 401 credits, 403, 500, 502, 503, slow, dropped connection) so
retry logic can be tested, and signs Event Webhook posts exactly like SendGrid (ECDSA P-256)
so webhook receivers can be tested with the official verification helper.

Modules: `config` (`ServerConfig`), `stats` (`ServerStats`, `SinkWindow`: typed snapshots, JSON
between processes), `transport` (HTTP, lifecycle, auth, counters), `server` (the contract
server), `sink` (the counting sink), `contract` (the OpenAPI file, compiled), `rules` (request
validation), `faults`, `messages` (what an accepted request delivers), `events` (signed webhook
posts), `process` (command line and child-process helper).

Run it by hand with ``python -m newsletter.testing.sendgrid_server --port 8025`` (add
``--sink`` for a server that only counts recipients).
"""

from newsletter.testing.sendgrid_server.config import ServerConfig
from newsletter.testing.sendgrid_server.contract import MAIL_SEND_PATH, SPEC_ENV_VAR
from newsletter.testing.sendgrid_server.events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.testing.sendgrid_server.faults import Faults
from newsletter.testing.sendgrid_server.messages import DeliveredMessage
from newsletter.testing.sendgrid_server.process import ServerProcess, main
from newsletter.testing.sendgrid_server.rules import validate_mail_send
from newsletter.testing.sendgrid_server.server import SendGridServer
from newsletter.testing.sendgrid_server.sink import SinkServer
from newsletter.testing.sendgrid_server.stats import RequestRecord, ServerStats, SinkWindow

__all__ = [
    "MAIL_SEND_PATH",
    "SIGNATURE_HEADER",
    "SPEC_ENV_VAR",
    "TIMESTAMP_HEADER",
    "DeliveredMessage",
    "Faults",
    "RequestRecord",
    "SendGridServer",
    "ServerConfig",
    "ServerProcess",
    "ServerStats",
    "SinkServer",
    "SinkWindow",
    "main",
    "validate_mail_send",
]
