"""The OpenAPI 3 document for the JSON endpoints (served at ``/openapi.json``).

The binary sync endpoint is specified in docs/sync-protocol.md; this document covers what a
distributor, an operator or a monitoring system calls. The test suite runs schemathesis against
it, so every response the server gives must match what is written here.
"""

from __future__ import annotations

from typing import Any

from agent_client.protocol.frames import Reason
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind

from . import audit
from .callbacks import Outcome
from .escrow import Flag
from .health import FAILED, OK, OVER_BUDGET, TIMED_OUT
from .reports import MAX_ID, MAX_LIMIT

Schema = dict[str, Any]

INT = {"type": "integer"}
NULL_INT = {"type": ["integer", "null"]}
NULL_NUM = {"type": ["number", "null"]}
STR = {"type": "string"}

ERROR: Schema = {
    "type": "object",
    "required": ["error", "detail", "server_ms"],
    "properties": {"error": STR, "detail": STR, "server_ms": INT},
}


def _page(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["items", "next_cursor", "server_ms"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
            "server_ms": INT,
        },
    }


def _object(**props: Schema) -> Schema:
    return {"type": "object", "required": list(props), "properties": props}


VERDICTS = [OK, OVER_BUDGET, TIMED_OUT, FAILED]
REPORT_CHECKS: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["report", "status", "ms", "budget_ms", "verdict"],
        "properties": {
            "report": STR,
            "status": NULL_INT,
            "ms": {"type": "number"},
            "budget_ms": {"type": "number"},
            "verdict": {"enum": VERDICTS},
            "problem": STR,
        },
    },
}
"""/readyz's checks, as `server-stub check-reports` prints them."""


def _error(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PAGE_PARAMS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
    {"name": "cursor", "in": "query", "schema": STR},
]
DAY_PARAMS = [
    {
        "name": n,
        "in": "query",
        "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    }
    for n in ("from", "to")
]
AGENT_PARAM = [
    {"name": "agent", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
]

LATENCY = _object(count=INT, p50_s=NULL_NUM, p95_s=NULL_NUM, max_s=NULL_NUM)
ITEMS: dict[str, tuple[str, Schema, list[Schema]]] = {
    "sales": (
        "Devices sold and down payments, per agent and day",
        _object(day=STR, agent=INT, agent_name=STR, sales=INT, down_payments=INT),
        DAY_PARAMS + AGENT_PARAM,
    ),
    "collections": (
        "Payments after the sale per agent and day, by channel",
        _object(
            day=STR,
            agent=INT,
            agent_name=STR,
            payments=INT,
            amount=INT,
            mobile_money=INT,
            agent_cash=INT,
        ),
        DAY_PARAMS + AGENT_PARAM,
    ),
    "devices": (
        "Sold devices: credit remaining and days since the last payment",
        _object(
            device=INT,
            agent=INT,
            plan=INT,
            credit_remaining_s=INT,
            days_since_last_payment=INT,
            unspent_balance=INT,
        ),
        AGENT_PARAM,
    ),
    "activation": (
        "Mobile-money activation latency per day (payment to keycode, SMS, handset)",
        _object(
            day=STR, payments=INT, issued=LATENCY, sms_delivered=LATENCY, handset_downlinked=LATENCY
        ),
        DAY_PARAMS,
    ),
    "usage": (
        "OpenPAYGO Metrics: each reporting device's last usage and the bytes its reports took",
        _object(
            device=INT,
            agent=NULL_INT,
            requests=INT,
            rows=INT,
            token_count=NULL_INT,
            energy_wh=NULL_NUM,
            hours_of_use=NULL_NUM,
            tokens_sent=INT,
            bytes_in=INT,
            bytes_out=INT,
            first_ms=INT,
            last_ms=INT,
        ),
        AGENT_PARAM,
    ),
}

NAMES = {
    "type": "array",
    "maxItems": 64,
    "uniqueItems": True,
    "items": {"type": "string", "minLength": 1, "maxLength": 64},
}
DATA_FORMAT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "data_order": NAMES,
        "historical_data_order": NAMES,
        "historical_data_interval": {
            "type": "integer",
            "minimum": -(2**31) + 1,
            "maximum": 2**31 - 1,
            "not": {"const": 0},
        },
        "id": {"description": "ignored: the platform assigns ids"},
    },
}
STAMP = {"type": "integer", "minimum": 0, "maximum": 2**53}
ROW = {"type": ["object", "array"]}
DEVICE_DATA = {
    "type": "object",
    "description": "An OpenPAYGO Metrics request, condensed keys (sn, ts, rc, d, hd, a, ...)"
    " or simple ones (serial_number, timestamp, ...); the condensed key wins when both come.",
    "anyOf": [{"required": ["sn", "a"]}, {"required": ["serial_number", "auth"]}],
    "properties": {
        **{
            k: v
            for short, long_, v in (
                ("sn", "serial_number", {"type": "string", "minLength": 1, "maxLength": 64}),
                ("a", "auth", {"type": "string", "maxLength": 64}),
                ("ts", "timestamp", STAMP),
                ("rc", "request_count", STAMP),
                ("dct", "data_collection_timestamp", STAMP),
                ("df", "data_format_id", {"type": "integer", "minimum": 1, "maximum": 2**53}),
                ("dfo", "data_format", DATA_FORMAT),
                ("d", "data", ROW),
                ("hd", "historical_data", {"type": "array", "maxItems": 1024, "items": ROW}),
            )
            for k in (short, long_)
        },
        "dtc": {**STAMP, "description": "dct as the openpaygo package names it"},
    },
}
METRICS_ANSWER = {
    "type": "object",
    "required": ["a"],
    "properties": {
        "tkl": {"type": "array", "items": STR, "description": "tokens, in count order"},
        "a": {"type": "string", "description": "da signature of the answer"},
    },
}
METRICS_REFUSALS = {
    "400": _error("malformed body or field"),
    "401": _error("unsigned request"),
    "403": _error("signature does not match the device's key"),
    "404": _error("unknown device"),
    "409": _error("request_count or timestamp not above the last accepted one"),
    "413": _error("body too large"),
    "422": _error("no count or timestamp, unknown data format, or data not in its format"),
}


def _device_data(operation: str) -> Schema:
    return {
        "post": {
            "operationId": operation,
            "summary": "OpenPAYGO Metrics: a device reports usage and gets its tokens back",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DEVICE_DATA}},
            },
            "responses": {
                "201": _json("stored; the signed answer", METRICS_ANSWER),
                **METRICS_REFUSALS,
            },
        }
    }


CALLBACK = {
    "type": "object",
    "required": ["txn", "account", "amount", "msisdn", "status", "paid_ms"],
    "properties": {
        "txn": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,40}$"},
        "account": {"type": "string", "pattern": "^[0-9]{1,10}$"},
        "amount": {"type": "integer", "minimum": 1, "maximum": 10**9},
        "msisdn": {"type": "string", "pattern": "^[+]?[0-9]{6,16}$"},
        "status": {"enum": ["success", "failed"]},
        "paid_ms": {"type": "integer", "minimum": 0, "maximum": 2**53},
    },
}
CALLBACK_ANSWER = _object(
    txn=STR, result=STR, duplicate={"type": "boolean"}, keycode_issued={"type": "boolean"}
)
STEPS = _object(
    txn=STR,
    outcome=STR,
    account=STR,
    amount=INT,
    paid_ms=INT,
    received_ms=INT,
    confirmed_ms=NULL_INT,
    issued_ms=NULL_INT,
    keycode={"type": ["string", "null"]},
    sms_sent_ms=NULL_INT,
    sms_attempts=INT,
    sms_delivered_ms=NULL_INT,
    handset_downlinked_ms=NULL_INT,
    handset_synced_ms=NULL_INT,
    server_ms=INT,
)


AUDIT_PARAMS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": audit.MAX_LIMIT},
    },
    {"name": "cursor", "in": "query", "schema": STR},
]
PAID_BY = {
    "description": "the paying key: a handset operation, an operator transaction, or null"
    " for a keycode nobody paid for",
    "anyOf": [
        _object(handset=INT, seq=INT),
        _object(txn=STR),
        {"type": "null"},
    ],
}
AUDIT_ITEMS: dict[str, tuple[str, Schema]] = {
    "operations": (
        "Every handset operation the platform stored, with its outcome",
        _object(
            handset=INT,
            seq=INT,
            kind={"enum": [k.name.lower() for k in Kind]},
            outcome={"enum": [audit.APPLIED, *(r.name.lower() for r in Reason)]},
            received_ms=INT,
        ),
    ),
    "keycodes": (
        "Every keycode the platform issued, with the key that paid for it",
        _object(
            keycode=INT,
            device=INT,
            handset=INT,
            format={"enum": [f.name.lower() for f in KeycodeFormat]},
            message_id=INT,
            text=STR,
            days=INT,
            credit_s=INT,
            amount=INT,
            paid_by=PAID_BY,
            issued_ms=INT,
        ),
    ),
    "payments": (
        "Every operator (mobile-money) transaction as the platform received it",
        _object(
            txn=STR,
            outcome={"enum": [o.value for o in Outcome]},
            account=STR,
            device=NULL_INT,
            amount=INT,
            keycode=NULL_INT,
            received_ms=INT,
        ),
    ),
    "escrow": (
        "Every event of an offline-sale escrowed code (docs/offline-sales.md)",
        _object(
            event={"enum": ["granted", "reconciled", "revoked", "dropped", "flagged"]},
            agent=INT,
            device=INT,
            reserved_id=INT,
            days=INT,
            sale={"anyOf": [_object(handset=INT, seq=INT), {"type": "null"}]},
            flag={"enum": [*(f.value for f in Flag), None]},
            at_ms=INT,
        ),
    ),
}
CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string", "pattern": "^Bearer"}}}
RETRY = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
TENANT = {
    "401": {**_error("missing, unknown or revoked distributor token"), "headers": CHALLENGE},
    "429": {**_error("too many wrong tokens from this source; retry later"), "headers": RETRY},
}
"""How the distributor-facing endpoints refuse a request without a live token."""


def _audit() -> Schema:
    paths: Schema = {}
    for feed, (summary, item) in AUDIT_ITEMS.items():
        paths[f"/v1/audit/{feed}"] = {
            "get": {
                "operationId": f"audit_{feed}",
                "summary": summary,
                "description": "Insertion order; pages read while writes happen see every row"
                " exactly once.",
                "security": [{"audit": []}],
                "parameters": AUDIT_PARAMS,
                "responses": {
                    "200": _json("one page; pass next_cursor back for the next", _page(item)),
                    "400": _error("bad parameter or cursor"),
                    "401": {**_error("missing or wrong bearer token"), "headers": CHALLENGE},
                    "404": _error("audit is not configured on this server"),
                },
            }
        }
    return paths


def _reports() -> Schema:
    paths: Schema = {}
    for name, (summary, item, params) in ITEMS.items():
        paths[f"/v1/reports/{name}"] = {
            "get": {
                "operationId": f"report_{name}",
                "summary": summary,
                "description": "The token's distributor's rows only.",
                "security": [{"distributor": []}],
                "parameters": PAGE_PARAMS + params,
                "responses": {
                    "200": _json("one page; pass next_cursor back for the next", _page(item)),
                    "400": _error("bad parameter or cursor"),
                    **TENANT,
                },
            }
        }
    return paths


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PAYG platform stand-in",
            "version": "1",
            "description": "Distributor reports, mobile-money callbacks, the audit API,"
            " operations.",
        },
        "paths": {
            **_reports(),
            **_audit(),
            "/v1/payments/{txn}": {
                "get": {
                    "operationId": "payment_steps",
                    "summary": "When each step of one mobile-money payment happened (ms)",
                    "security": [{"distributor": []}],
                    "parameters": [{"name": "txn", "in": "path", "required": True, "schema": STR}],
                    "responses": {
                        "200": _json("the steps", STEPS),
                        "404": _error("no such transaction for the token's distributor"),
                        **TENANT,
                    },
                }
            },
            "/v1/mm/callback": {
                "post": {
                    "operationId": "mm_callback",
                    "summary": "The operator's payment callback, idempotent on txn",
                    "parameters": [
                        {
                            "name": "X-MM-Signature",
                            "in": "header",
                            "required": True,
                            "schema": STR,
                            "description": "hex HMAC-SHA256 of the body with the shared secret",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": CALLBACK}},
                    },
                    "responses": {
                        "200": _json(
                            "applied, recorded as failed, or a duplicate", CALLBACK_ANSWER
                        ),
                        "400": _error("malformed body"),
                        "401": _error("missing or wrong signature"),
                        "409": _error("same txn, other content"),
                        "413": _error("body too large"),
                        "422": _error("unknown account (stored; replays get the same)"),
                    },
                }
            },
            "/dd": _device_data("device_data"),
            "/device_data": _device_data("device_data_long"),
            "/data_format": {
                "post": {
                    "operationId": "data_format",
                    "summary": "Register an OpenPAYGO Metrics data format (same format, same id)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": DATA_FORMAT}},
                    },
                    "responses": {
                        "201": _json("its id", _object(id=INT)),
                        "400": _error("not a data format"),
                        "413": _error("body too large"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "responses": {"200": _json("alive", _object(ok={"type": "boolean"}))},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "responses": {
                        "200": _json(
                            "ready: each critical report's first page ran within the budget",
                            _object(
                                ready={"type": "boolean"},
                                probe_s={"type": "number"},
                                reports=REPORT_CHECKS,
                            ),
                        ),
                        "503": _json(
                            "not ready (draining; a report failed or missed the budget)",
                            {
                                "type": "object",
                                "required": ["ready", "reason"],
                                "properties": {
                                    "ready": {"type": "boolean"},
                                    "reason": STR,
                                    "reports": REPORT_CHECKS,
                                },
                            },
                        ),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": STR}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "audit": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the audit token the server was started with",
                },
                "distributor": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a distributor's token (server-stub add-distributor)",
                },
            },
        },
    }
