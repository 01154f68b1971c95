"""Test and benchmark helpers that stand in for external services (no network needed).

`newsletter.testing.sendgrid_server` runs a local HTTP server that speaks SendGrid's
v3 Mail Send contract, so the real `sendgrid` client can be exercised end to end.
"""
