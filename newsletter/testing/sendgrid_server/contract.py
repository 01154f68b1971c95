"""The official contract of POST /v3/mail/send: Twilio's OpenAPI file, compiled once.

The file is looked up at $SENDGRID_OPENAPI_SPEC, then in the copy shipped beside this
package (`newsletter/testing/contract/`), then in the project's `shared/` folder.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.exceptions import MissingExtra

try:
    import fastjsonschema
except ImportError:  # a plain install: the server is for tests and demos only
    raise MissingExtra("testing", "the local SendGrid server (sendgrid-server)") from None

MAIL_SEND_PATH = "/v3/mail/send"
SPEC_ENV_VAR = "SENDGRID_OPENAPI_SPEC"
_TESTING = Path(__file__).resolve().parents[1]  # newsletter/testing


def _spec_candidates() -> Iterator[Path]:
    env = os.environ.get(SPEC_ENV_VAR)
    if env:
        yield Path(env)
    # the copy shipped with the package, then the project's shared/ folder beside the repo
    yield _TESTING / "contract" / "tsg_mail_v3.json"
    yield _TESTING.parents[2] / "shared" / "sendgrid" / "tsg_mail_v3.json"


def _find_spec() -> Path:
    for path in _spec_candidates():
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"SendGrid OpenAPI file tsg_mail_v3.json not found; set {SPEC_ENV_VAR} to its path"
    )


_ANNOTATIONS = frozenset({"description", "example", "examples", "title", "default", "nullable"})
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """Inline local $refs (merging siblings, as 2020-12 does) and drop annotations.

    ``default`` is dropped too, otherwise fastjsonschema would write defaults into the body.
    """
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref = node.get("$ref")
    if ref is not None:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        out.update(_resolve(target, root))
    for key, value in node.items():
        if key == "$ref" or key in _ANNOTATIONS:
            continue
        if key == "properties":  # property *names* may collide with keywords
            out[key] = {name: _resolve(sub, root) for name, sub in value.items()}
        else:
            out[key] = _resolve(value, root)
    return out


def _mail_send_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """The request schema of POST /v3/mail/send, adapted to what SendGrid really accepts."""
    body = spec["paths"][MAIL_SEND_PATH]["post"]["requestBody"]
    schema = _resolve(body, spec)["content"]["application/json"]["schema"]
    props = schema["properties"]
    pers = props["personalizations"]["items"]["properties"]
    # The file types message-level custom_args as "string", but the API and the official
    # library use an object of strings (the personalization one is an object already).
    props["custom_args"] = dict(_STRING_MAP)
    pers["custom_args"] = {**pers["custom_args"], **_STRING_MAP}
    # Header values must be strings (SendGrid rejects numbers/objects there).
    props["headers"] = dict(_STRING_MAP)
    pers["headers"] = dict(_STRING_MAP)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


@dataclass(frozen=True)
class Validators:
    fast: Callable[[Any], Any]  # first error only, no details: the hot path
    full: Callable[[Any], Any]  # collects every error: only run on invalid bodies


@functools.lru_cache(maxsize=1)
def validators() -> Validators:
    spec = json.loads(_find_spec().read_text(encoding="utf-8"))
    schema = _mail_send_schema(spec)
    return Validators(
        fast=fastjsonschema.compile(schema, use_default=False, detailed_exceptions=False),
        full=fastjsonschema.compile(schema, use_default=False, fast_fail=False),
    )
