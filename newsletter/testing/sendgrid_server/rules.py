"""The request rules of POST /v3/mail/send: the OpenAPI schema, then the limits SendGrid only
states in prose (reserved headers, unique recipients, byte limits, send_at window ...),
answered as SendGrid-shaped errors with dotted field paths."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema

from newsletter.testing.sendgrid_server.contract import validators

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS_PER_PERSONALIZATION = 1000
MAX_SUBSTITUTIONS_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD_SECONDS = 72 * 3600
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
HELP_URL = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"

Error = dict[str, Any]


def error(message: str, field_path: str | None, help_: str | None = HELP_URL) -> Error:
    return {"message": message, "field": field_path, "help": help_}


def errors_body(*errors: Error) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_REQUIRED_MESSAGES = {
    "from": (
        "The from object must be provided for every email send. It is an object that "
        "requires the email parameter, but may also contain a name parameter."
    ),
    "personalizations": (
        "The personalizations field is required and must have at least one personalization."
    ),
    "to": (
        "The to array is required for all personalization objects, and must have at least "
        "one email object with a valid email address."
    ),
}


def _join(*parts: object) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _schema_errors(exc: fastjsonschema.JsonSchemaValueException) -> list[Error]:
    """Turn one fastjsonschema error into SendGrid-style errors with dotted field paths."""
    path = _join(*exc.path[1:])  # drop the leading "data"
    rule, limit, value = exc.rule, exc.rule_definition, exc.value
    if rule == "required":
        missing = [k for k in limit if not isinstance(value, dict) or k not in value]
        return [
            error(
                _REQUIRED_MESSAGES.get(k, f"The {_join(path, k)} field is required."),
                _join(path, k),
            )
            for k in missing
        ]
    if rule == "type":
        expected = limit if isinstance(limit, str) else " or ".join(limit)
        message = f"Invalid type. Expected: {expected}, given: {_json_type(value)}."
    elif rule == "format":
        message = "Does not contain a valid address."
    elif rule == "minLength":
        message = f"The {path} must be a string at least {limit} character(s) in length."
    elif rule == "maxLength":
        message = f"The {path} may not be longer than {limit} characters."
    elif rule == "maxItems":
        message = f"The {path} array may not contain more than {limit} items."
    elif rule == "uniqueItems":
        message = f"The {path} array must not contain duplicate items."
    elif rule == "maxProperties":
        message = f"The {path} object may not have more than {limit} properties."
    elif rule == "enum":
        message = f"The {path} must be one of: {', '.join(map(str, limit))}."
    else:
        message = exc.message.replace("data.", "", 1)
    return [error(message, path or None)]


def _kv_bytes(mapping: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _check_headers(headers: dict[str, str] | None, where: str, add: Callable[[Error], None]):
    if not headers:
        return
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            add(
                error(
                    f"The {name} header is reserved and cannot be set in headers. Reserved headers:"
                    " x-sg-id, x-sg-eid, received, dkim-signature, Content-Type,"
                    " Content-Transfer-Encoding, To, From, Subject, Reply-To, CC, BCC.",
                    f"{where}.{name}",
                )
            )


def _check_send_at(send_at: int | None, where: str, limit: float, add: Callable[[Error], None]):
    if send_at is not None and (send_at < 0 or send_at > limit):
        add(
            error(
                "The send_at parameter must be a unix timestamp no more than 72 hours in the future.",
                where,
            )
        )


def _check_content(content: list[dict[str, str]], add: Callable[[Error], None]) -> None:
    types = [item["type"].lower() for item in content]
    html_slot = 1 if types and types[0] == "text/plain" else 0
    for i, kind in enumerate(types):
        if (kind == "text/plain" and i != 0) or (kind == "text/html" and i != html_slot):
            add(
                error(
                    "If present, text/plain content must be first and appear once, followed by"
                    " text/html (once), followed by any other content type.",
                    f"content.{i}.type",
                )
            )


def _check_name(name: str | None, where: str, add: Callable[[Error], None]) -> None:
    if (
        name
        and (";" in name or "," in name)
        and not (len(name) >= 2 and name[0] == '"' and name[-1] == '"')
    ):
        add(
            error(
                "A name containing ';' or ',' must be enclosed in double quotes.",
                where,
            )
        )


def _check_rules(body: dict[str, Any], now: float) -> list[Error]:
    """The rules SendGrid states in prose, checked for every personalization.

    Only called on schema-valid bodies, so types are known to be right.
    """
    errors: list[Error] = []
    add = errors.append
    send_at_limit = now + MAX_SEND_AT_AHEAD_SECONDS
    template = body.get("template_id")

    _check_headers(body.get("headers"), "headers", add)
    _check_send_at(body.get("send_at"), "send_at", send_at_limit, add)
    top_args = body.get("custom_args") or {}
    top_args_bytes = _kv_bytes(top_args)
    if top_args_bytes > MAX_CUSTOM_ARGS_BYTES:
        add(error(f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args"))
    if "reply_to" in body and "reply_to_list" in body:
        add(error("You can use either reply_to or reply_to_list but not both.", "reply_to_list"))
    content = body.get("content")
    if content:
        _check_content(content, add)
    elif not template:
        add(
            error(
                "Unless a valid template_id is provided, the content parameter is required."
                " There must be at least one defined content block.",
                "content",
            )
        )

    personalizations = body["personalizations"]
    if not personalizations:
        add(error(_REQUIRED_MESSAGES["personalizations"], "personalizations"))
    subject_needed = not body.get("subject") and not template
    missing_subject: int | None = None
    seen: dict[str, tuple[int, str]] = {}  # lowercased address -> (personalization, field)
    for i, pers in enumerate(personalizations):
        count = 0
        for kind in ("to", "cc", "bcc"):
            recipients = pers.get(kind)
            if recipients is None:
                continue
            if kind == "to" and not recipients:
                add(error(_REQUIRED_MESSAGES["to"], f"personalizations.{i}.to"))
            count += len(recipients)
            for j, recipient in enumerate(recipients):
                address = recipient["email"].lower()
                if not address.isascii():
                    # `format: email` is RFC 5321's mailbox: ASCII (SendGrid has no SMTPUTF8).
                    add(
                        error(
                            "Does not contain a valid address.",
                            f"personalizations.{i}.{kind}.{j}.email",
                        )
                    )
                first = seen.get(address)
                if first is None:
                    seen[address] = (i, f"personalizations.{i}.{kind}.{j}.email")
                else:
                    where = f"personalizations.{i}.{kind}.{j}.email"
                    if first[0] == i:
                        message = (
                            "Each email address in the personalization block should be unique"
                            " between to, cc, and bcc. We found the first duplicate instance of"
                            f" [{recipient['email']}] in the personalizations.{i}.{kind} field."
                        )
                    else:
                        message = (
                            "Each email address should be unique across the request (compared"
                            f" case-insensitively): [{recipient['email']}] already appears at"
                            f" {first[1]}."
                        )
                    add(error(message, where))
                name = recipient.get("name")
                if name:
                    _check_name(name, f"personalizations.{i}.{kind}.{j}.name", add)
        if count > MAX_RECIPIENTS_PER_PERSONALIZATION:
            add(
                error(
                    f"A personalization may not have more than {MAX_RECIPIENTS_PER_PERSONALIZATION}"
                    " recipients in total across to, cc and bcc.",
                    f"personalizations.{i}",
                )
            )
        subs = pers.get("substitutions")
        if subs and _kv_bytes(subs) > MAX_SUBSTITUTIONS_BYTES:
            add(
                error(
                    f"The total size of substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES}"
                    " bytes per personalization.",
                    f"personalizations.{i}.substitutions",
                )
            )
        args = pers.get("custom_args")
        if args:
            size = _kv_bytes({**top_args, **args}) if top_args else _kv_bytes(args)
            if size > MAX_CUSTOM_ARGS_BYTES:
                add(
                    error(
                        f"The custom_args (message level and personalization combined) may not"
                        f" exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                        f"personalizations.{i}.custom_args",
                    )
                )
        if subject_needed and missing_subject is None and not pers.get("subject"):
            missing_subject = i
        _check_headers(pers.get("headers"), f"personalizations.{i}.headers", add)
        _check_send_at(pers.get("send_at"), f"personalizations.{i}.send_at", send_at_limit, add)
    if missing_subject is not None:
        add(
            error(
                "The subject is required. You can get around this requirement if you use a template"
                " with a subject defined or if every personalization has a subject defined"
                f" (personalizations.{missing_subject} has none).",
                "subject",
            )
        )
    return errors


def validate_mail_send(body: Any, *, now: float | None = None) -> list[Error]:
    """Check a decoded /v3/mail/send body; return SendGrid-style errors ([] if valid).

    Public so benchmarks can time validation alone and tests can check bodies offline.
    """
    if not isinstance(body, dict):
        return [error("The request body must be a JSON object.", None)]
    compiled = validators()
    try:
        compiled.fast(body)
    except fastjsonschema.JsonSchemaValueException:
        try:
            compiled.full(body)
        except fastjsonschema.JsonSchemaValuesException as exc:
            return [e for err in exc.errors for e in _schema_errors(err)]
        except fastjsonschema.JsonSchemaValueException as exc:  # raised by trial subschemas
            return _schema_errors(exc)
        return [error("invalid request", None)]  # unreachable: both compile the same schema
    return _check_rules(body, time.time() if now is None else now)
