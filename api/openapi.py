"""The OpenAPI 3.1 document of the API, built from the same pydantic models and enums the handlers use, so
that it cannot drift from what they accept and return (tests/unit/test_api.py validates it)."""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from api.health_routes import ForecastPage, RobotHealth
from common.wire.schemas import MAX_AXIS, AckOutcome, Alert, AlertState, MaintenanceAction, MaintenanceEntry, Severity

BEARER = [{"bearer": []}]


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paged(summary: str, items: str, page: str, *filters: dict) -> dict:
    """A GET of pages cut by a cursor, filtered by robot, axis and ``filters``."""
    return {
        "summary": summary,
        "security": BEARER,
        "parameters": [
            _query("robot", {"type": "string"}, "only this robot"),
            _query("axis", {"type": "integer", "minimum": 1}, "only this axis"),
            *filters,
            _query("limit", {"type": "integer", "minimum": 1}, f"{items} per page (API_PAGE_SIZE)"),
            _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
        ],
        "responses": {
            "200": _json(f"#/components/schemas/{page}", "one page"),
            "400": _error("a filter, limit or cursor not understood"),
            "401": _error("no token, or not a valid one"),
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    alert = Alert.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = alert.pop("$defs", {})
    time = {"type": "string", "format": "date-time"}
    check = {"200": {"description": "yes"}, "503": {"description": "no, with the reason"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "axiswatch API",
            "version": "1",
            "description": "Alerts, acknowledgements, robots, joint health.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **defs,
                **_health_schemas(),
                "Alert": alert,
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "AlertPage": {
                    "type": "object",
                    "required": ["alerts", "next_cursor"],
                    "properties": {
                        "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                        "next_cursor": {"type": ["string", "null"], "description": "null on the last page"},
                    },
                },
                **_maintenance_schemas(),
                "Acknowledge": {
                    "type": "object",
                    "required": ["outcome"],
                    "additionalProperties": False,
                    "properties": {
                        "outcome": {"type": "string", "enum": [o.value for o in AckOutcome]},
                        "note": {"type": ["string", "null"], "maxLength": 2000},
                    },
                },
                "Robots": {
                    "type": "object",
                    "required": ["robots"],
                    "properties": {
                        "robots": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["robot_id", "latest_ts", "axes"],
                                "properties": {
                                    "robot_id": {"type": "string"},
                                    "latest_ts": {**time, "type": ["string", "null"]},
                                    "axes": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "axis": {"type": "integer"},
                                                "label": {"type": "string"},
                                                "ts": time,
                                                "amps": {"type": ["number", "null"]},
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/v1/alerts": {
                "get": _paged(
                    "Alert events, newest opening first, one page at a time",
                    "events",
                    "AlertPage",
                    _query("state", {"type": "string", "enum": [s.value for s in AlertState]}, "open or closed"),
                    _query("severity", {"type": "string", "enum": [s.value for s in Severity]}, "ALERT or ERROR"),
                    _query("since", time, "events still open at or after this instant (ISO 8601 with zone)"),
                    _query("until", time, "events opened at or before this instant"),
                )
            },
            "/v1/alerts/{event_id}/acknowledge": {
                "post": {
                    "summary": "Acknowledge an event as the token's user, with what was found",
                    "security": BEARER,
                    "parameters": [{"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Acknowledge"}}},
                    },
                    "responses": {
                        "200": _json("#/components/schemas/Alert", "the event as acknowledged"),
                        "400": _error("the body is not an outcome and a note"),
                        "401": _error("no token, or not a valid one"),
                        "403": _error("the user's role may not acknowledge (viewer)"),
                        "404": _error("no such event"),
                        "503": _error("the alerts topic could not be reached; nothing was acknowledged"),
                    },
                }
            },
            "/v1/robots": {
                "get": {
                    "summary": "Robots with their latest reading time and latest value per axis",
                    "security": BEARER,
                    "responses": {
                        "200": _json("#/components/schemas/Robots", "every robot"),
                        "401": _error("no token, or not a valid one"),
                    },
                }
            },
            **_health_paths(time),
            **_maintenance_paths(time),
            **_user_paths(),
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "it"}}}},
            "/livez": {"get": {"summary": "The service's loop turns", "responses": check}},
            "/readyz": {"get": {"summary": "The database answers and the bus is up", "responses": check}},
        },
    }


def _health_schemas() -> dict[str, Any]:
    """The health answers' models and every model under them, by name."""
    _, top = models_json_schema(
        [(RobotHealth, "serialization"), (ForecastPage, "serialization")], ref_template="#/components/schemas/{model}"
    )
    return top["$defs"]


def _health_paths(time: dict) -> dict[str, Any]:
    return {
        "/v1/robots/{robot_id}/health": {
            "get": {
                "summary": "One robot's joint health per axis: forecast crossing, latest cycle, daily trend",
                "security": BEARER,
                "parameters": [
                    {"name": "robot_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    _query("days", {"type": "integer", "minimum": 1, "maximum": 400}, "days of daily trend (30)"),
                ],
                "responses": {
                    "200": _json("#/components/schemas/RobotHealth", "every axis with health rows, by axis"),
                    "400": _error("days not understood"),
                    "401": _error("no token, or not a valid one"),
                    "404": _error("no such robot"),
                },
            }
        },
        "/v1/health/forecasts": {
            "get": _paged(
                "Forecasts of the fleet, the earliest crossing first, one page at a time",
                "forecasts",
                "ForecastPage",
                _query("max_days_left", {"type": "number", "minimum": 0}, "crossing at most N days after"),
                _query("due_before", time, "crossing forecast at or before this instant (ISO 8601 with zone)"),
            )
        },
    }


def _maintenance_schemas() -> dict:
    entry = MaintenanceEntry.model_json_schema()
    entry.pop("$defs", None)
    entry["properties"]["action"] = {"type": "string", "enum": [a.value for a in MaintenanceAction]}
    count = {"type": "integer"}
    return {
        "MaintenanceEntry": entry,
        "LogMaintenance": {
            "type": "object",
            "required": ["robot_id", "axis", "action"],
            "additionalProperties": False,
            "properties": {
                "robot_id": {"type": "string", "maxLength": 64},
                "axis": {"type": "integer", "minimum": 1, "maximum": MAX_AXIS},
                "action": {"type": "string", "enum": [a.value for a in MaintenanceAction]},
                "note": {"type": ["string", "null"], "maxLength": 2000},
            },
        },
        "MaintenanceHistory": {
            "type": "object",
            "required": ["entries"],
            "properties": {"entries": {"type": "array", "items": {"type": "object"}}},
        },
        "DetectorOutcomes": {
            "type": "object",
            "required": ["detectors"],
            "properties": {
                "detectors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "detector": {"type": "string"},
                            "alerts": count,
                            "judged": count,
                            "real_fault": count,
                            "part_replaced": count,
                            "inspected_ok": count,
                            "false_alarm": count,
                            "real": count,
                            "real_share": {"type": ["number", "null"], "description": "real / judged"},
                        },
                    },
                }
            },
        },
    }


def _maintenance_paths(time: dict) -> dict:
    """The maintenance log's routes (api.maintenance_routes)."""
    unauthorized = _error("no token, or not a valid one")
    return {
        "/v1/maintenance": {
            "post": {
                "summary": "Log what was done to a joint, without an alert (part_replaced restarts its baselines)",
                "security": BEARER,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogMaintenance"}}},
                },
                "responses": {
                    "201": _json("#/components/schemas/MaintenanceEntry", "the entry as published"),
                    "400": _error("the body is not a robot, an axis, an action and a note"),
                    "401": unauthorized,
                    "403": _error("the user's role may not log maintenance (viewer)"),
                    "404": _error("no such robot and axis"),
                    "503": _error("the maintenance topic could not be reached; nothing was logged"),
                },
            },
            "get": {
                "summary": "The maintenance log, newest first",
                "security": BEARER,
                "parameters": [
                    _query("robot", {"type": "string"}, "only this robot"),
                    _query("axis", {"type": "integer", "minimum": 1}, "only this axis"),
                    _query("since", time, "entries at or after this instant"),
                    _query("until", time, "entries at or before this instant"),
                    _query("limit", {"type": "integer", "minimum": 1}, "entries at most (API_PAGE_SIZE)"),
                ],
                "responses": {
                    "200": _json("#/components/schemas/MaintenanceHistory", "the entries"),
                    "400": _error("a filter or limit not understood"),
                    "401": unauthorized,
                },
            },
        },
        "/v1/detectors/outcomes": {
            "get": {
                "summary": "Per detector: its alerts, how many were judged, and how many people found real",
                "security": BEARER,
                "parameters": [
                    _query("robot", {"type": "string"}, "only this robot"),
                    _query("since", time, "alerts opened at or after this instant"),
                    _query("until", time, "alerts opened at or before this instant"),
                ],
                "responses": {
                    "200": _json("#/components/schemas/DetectorOutcomes", "one row per detector"),
                    "400": _error("a filter not understood"),
                    "401": unauthorized,
                },
            }
        },
    }


def _user_paths() -> dict:
    """Users and roles (api.user_routes), admins only."""
    role = {"type": "string", "enum": ["viewer", "operator", "admin"]}
    user = {"type": "object", "properties": {"name": {"type": "string"}, "role": role}}
    body = {
        "type": "object",
        "required": ["name", "role", "password"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "role": role,
            "password": {"type": "string", "minLength": 12},
        },
    }
    change = {"type": "object", "required": ["role"], "additionalProperties": False, "properties": {"role": role}}
    answer = {"description": "the user and role", "content": {"application/json": {"schema": user}}}
    refused = {"401": _error("no token, or not a valid one"), "403": _error("the user is not an admin")}
    return {
        "/v1/users": {
            "get": {
                "summary": "Every user and role (admins)",
                "security": BEARER,
                "responses": {
                    "200": {
                        "description": "the users, by name",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"users": {"type": "array", "items": user}}}
                            }
                        },
                    },
                    **refused,
                },
            },
            "post": {
                "summary": "Add a user (admins; audited)",
                "security": BEARER,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": answer, "400": _error("a bad body, or the name is taken"), **refused},
            },
        },
        "/v1/users/{name}/role": {
            "put": {
                "summary": "Change a user's role (admins; audited; applies to their tokens at once)",
                "security": BEARER,
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": change}}},
                "responses": {"200": answer, "400": _error("not a role"), "404": _error("no such user"), **refused},
            }
        },
    }
