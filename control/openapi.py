"""The control-plane API's OpenAPI 3.1 document, built from the request models.

3.1 because pydantic emits JSON Schema 2020-12 (`type: null`, numeric exclusiveMinimum).
"""

from __future__ import annotations

from functools import cache
from typing import Any

EMAIL_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _responses(ok: str, *codes: str, body: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        ok: {"description": "success", **(_json({"type": "object"}) if ok != "204" else {})}
    }
    texts = {
        "400": "malformed JSON",
        "401": "missing or invalid bearer token",
        "403": "not allowed for this credential",
        "404": "no such mailbox",
        "409": "already exists",
        "413": "body too large",
        "422": "invalid values",
        "503": "database unavailable",
    }
    for c in ("401", "403", "503", *codes, *(("400", "413", "422") if body else ())):
        out[c] = {"description": texts[c], **_json(ERROR)}
    return out


@cache
def openapi_document() -> dict[str, Any]:
    from control.api import EmailTypeBody, MailboxBody, TenantBody

    defs: dict[str, Any] = {}
    for m in (EmailTypeBody, MailboxBody, TenantBody):
        full = m.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(full.pop("$defs", {}))
        defs[m.__name__] = full
    ref = {name: {"$ref": f"#/components/schemas/{name}"} for name in defs}
    email_type = {
        "name": "email_type",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": EMAIL_TYPE_PATTERN},
    }
    p = "/api/email/idle"
    return {
        "openapi": "3.1.0",
        "info": {"title": "idlewire control plane", "version": "1"},
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{p}/start": {
                "post": {
                    "summary": "Start watching the tenant's mailbox of a type",
                    "requestBody": {"required": True, **_json(ref["EmailTypeBody"])},
                    "responses": _responses("202", "404"),
                }
            },
            f"{p}/stop": {
                "post": {
                    "summary": "Stop watching it",
                    "requestBody": {"required": True, **_json(ref["EmailTypeBody"])},
                    "responses": _responses("202", "404"),
                }
            },
            f"{p}/status/{{email_type}}": {
                "get": {
                    "summary": "Desired and live state of one mailbox",
                    "parameters": [email_type],
                    "responses": _responses("200", "404", body=False),
                }
            },
            f"{p}/status": {
                "get": {
                    "summary": "All of the tenant's mailboxes",
                    "responses": _responses("200", body=False),
                }
            },
            f"{p}/admin/all": {
                "get": {
                    "summary": "Every tenant's mailboxes (admin)",
                    "responses": _responses("200", body=False),
                }
            },
            f"{p}/mailboxes/{{email_type}}": {
                "parameters": [email_type],
                "get": {
                    "summary": "A mailbox's settings (no secrets)",
                    "responses": _responses("200", "404", body=False),
                },
                "put": {
                    "summary": "Register or change a mailbox and its credentials",
                    "requestBody": {"required": True, **_json(ref["MailboxBody"])},
                    "responses": {**_responses("200"), "201": {"description": "created"}},
                },
                "delete": {
                    "summary": "Remove a mailbox and its credentials",
                    "responses": _responses("204", "404", body=False),
                },
            },
            "/api/admin/tenants": {
                "post": {
                    "summary": "Create a tenant and its first API token (admin)",
                    "requestBody": {"required": True, **_json(ref["TenantBody"])},
                    "responses": {**_responses("201", "409")},
                }
            },
        },
    }
