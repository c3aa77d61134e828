"""Contact batch endpoints: read, create, update, upsert, archive (<= ``batch_limit`` inputs).

200 when every input succeeded, 207 multi-status otherwise: unknown ids are grouped into one
``OBJECT_NOT_FOUND`` error (``context.ids``), each invalid input gets its own
``VALIDATION_ERROR`` (read-only / unknown property, wrong type, unknown option) or ``CONFLICT``
(email taken). With ``settings.batch_validation == "whole_batch"`` an invalid value rejects the
whole batch with a 400 instead. A malformed body (not JSON, missing ``inputs``, duplicate ids)
is always a 400.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .contacts import BASE, check_changes, conflict_message, requested_properties, validation_message
from .contacts import written_json as _written
from .schema import iso_ms
from .settings import HubSpotSettings
from .state import Contact, HubSpotState


def _input_id(inp: Any, where: int) -> str:
    if not isinstance(inp, dict):
        errors.fail(400, f"Invalid input JSON: inputs[{where}] must be an object")
    raw = inp.get("id")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        errors.fail(400, f"Invalid input JSON: inputs[{where}].id is required")
    return str(raw)


def _no_duplicates(ids: list[str]) -> None:
    counts = Counter(ids)
    dups = sorted(i for i, n in counts.items() if n > 1)
    if dups:
        errors.fail(400, f"Duplicate IDs found in batch input: {dups}. IDs must be unique")


class _Outcome:
    """Results and per-input errors of one batch call."""

    def __init__(self, started: int):
        self.started = started
        self.results: list[dict[str, Any]] = []
        self.missing: list[str] = []
        self.errors: list[dict[str, Any]] = []

    def invalid(self, input_id: str, details: list[dict[str, Any]]) -> None:
        names = [d["in"] for d in details if "in" in d]
        self.errors.append(
            errors.standard_error(
                validation_message(details),
                errors.VALIDATION_ERROR,
                {"id": [input_id], "propertyName": names},
                details,
            )
        )

    def transient(self, input_id: str) -> None:
        """An injected per-input failure (fault ``partial``): not applied; sending it again works."""
        self.errors.append(
            errors.standard_error(
                "Internal error while processing this input; it was not applied. Retry the request.",
                errors.INTERNAL_ERROR,
                {"id": [input_id]},
            )
        )

    def conflict(self, input_id: str, existing: str) -> None:
        self.errors.append(
            errors.standard_error(
                conflict_message(existing), errors.CONFLICT, {"id": [input_id], "existingId": [existing]}
            )
        )

    def response(self, ok_status: int, now: int) -> Response:
        errs = list(self.errors)
        if self.missing:
            errs.insert(
                0,
                errors.standard_error(
                    "Could not get some CONTACT objects, they may be deleted or not exist. "
                    "Check that ids are valid.",
                    errors.OBJECT_NOT_FOUND,
                    {"ids": self.missing},
                ),
            )
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": self.results,
            "startedAt": iso_ms(self.started),
            "completedAt": iso_ms(now),
        }
        if errs:
            body["numErrors"] = len(errs)
            body["errors"] = errs
        return Response.json(207 if errs else ok_status, body)


def _partial_victims(req: Request, ids: list[str]) -> set[str]:
    """Under the ``partial`` fault: the first input and every 7th after it fail transiently."""
    if req.fault != "partial" or not ids:
        return set()
    return set(ids[::7])


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    def guarded_inputs(req: Request) -> tuple[dict[str, Any], list[Any]]:
        body = errors.json_object(req)
        return body, errors.inputs_of(body, settings.batch_limit)

    def whole_batch_check(checked: list[tuple[str, list[dict[str, Any]]]]) -> None:
        bad = [(i, d) for i, d in checked if d]
        if bad and settings.batch_validation == "whole_batch":
            details = [d for _, ds in bad for d in ds]
            errors.fail(400, validation_message(details), errors=details, context={"id": [i for i, _ in bad]})

    @app.route("POST", BASE + "/batch/read", "contacts.batch.read", rate_class="standard")
    def batch_read(req: Request) -> Response:
        body, inputs = guarded_inputs(req)
        ids = [_input_id(inp, i) for i, inp in enumerate(inputs)]
        names = requested_properties(state, body.get("properties"))
        with_history = (
            requested_properties(state, body.get("propertiesWithHistory"))
            if body.get("propertiesWithHistory")
            else None
        )
        id_property = body.get("idProperty")
        archived = errors.bool_arg(req, "archived")
        with state.lock:
            out = _Outcome(state.clock())
            for key in ids:
                c = state.find(key, id_property, archived)
                if c is None:
                    out.missing.append(key)
                    continue
                obj = c.to_json(names)
                if with_history:
                    obj["propertiesWithHistory"] = {
                        n: [{"value": c.props[n], "timestamp": iso_ms(c.updated_ms), "sourceType": "API"}]
                        for n in with_history
                        if n in c.props
                    }
                out.results.append(obj)
            return out.response(200, state.clock())

    @app.route("POST", BASE + "/batch/update", "contacts.batch.update", rate_class="standard")
    def batch_update(req: Request) -> Response:
        _, inputs = guarded_inputs(req)
        ids = [_input_id(inp, i) for i, inp in enumerate(inputs)]
        _no_duplicates(ids)
        victims = _partial_victims(req, ids)
        with state.lock:
            out = _Outcome(state.clock())
            plan: list[tuple[Contact, dict[str, str | None]]] = []
            checked: list[tuple[str, list[dict[str, Any]]]] = []
            for key, inp in zip(ids, inputs, strict=True):
                if key in victims:
                    out.transient(key)
                    continue
                c = state.find(key, inp.get("idProperty"))
                if c is None:
                    out.missing.append(key)
                    continue
                changes, details, conflict = check_changes(state, inp.get("properties"), c)
                checked.append((key, details))
                if details:
                    out.invalid(key, details)
                elif conflict:
                    out.conflict(key, conflict)
                else:
                    plan.append((c, changes))
            whole_batch_check(checked)
            for c, changes in plan:
                state.apply(c, changes)
                out.results.append(_written(c, changes))
            return out.response(200, state.clock())

    @app.route("POST", BASE + "/batch/upsert", "contacts.batch.upsert", rate_class="standard")
    def batch_upsert(req: Request) -> Response:
        _, inputs = guarded_inputs(req)
        ids = [_input_id(inp, i) for i, inp in enumerate(inputs)]
        id_props = [inp.get("idProperty") or "hs_object_id" for inp in inputs]
        for p in id_props:
            if p not in ("hs_object_id", "email"):
                errors.fail(400, f"Property '{p}' is not a unique identifier property; upsert needs one")
        _no_duplicates([f"{p}:{i.lower()}" for p, i in zip(id_props, ids, strict=True)])
        victims = _partial_victims(req, ids)
        with state.lock:
            out = _Outcome(state.clock())
            plan: list[tuple[str, Contact | None, dict[str, str | None]]] = []
            checked: list[tuple[str, list[dict[str, Any]]]] = []
            for key, id_prop, inp in zip(ids, id_props, inputs, strict=True):
                if key in victims:
                    out.transient(key)
                    continue
                c = state.find(key, id_prop)
                if c is None and id_prop == "hs_object_id":
                    out.missing.append(key)
                    continue
                props = inp.get("properties")
                if c is None and isinstance(props, dict):
                    props = {**props, "email": props.get("email") or key}
                changes, details, conflict = check_changes(state, props, c)
                checked.append((key, details))
                if details:
                    out.invalid(key, details)
                elif conflict:
                    out.conflict(key, conflict)
                else:
                    plan.append((key, c, changes))
            whole_batch_check(checked)
            for _key, c, changes in plan:
                if c is None:
                    c = state.create({k: v for k, v in changes.items() if v is not None})
                    new = True
                else:
                    state.apply(c, changes)
                    new = False
                obj = _written(c, changes)
                obj["new"] = new
                out.results.append(obj)
            return out.response(200, state.clock())

    @app.route("POST", BASE + "/batch/create", "contacts.batch.create", rate_class="standard")
    def batch_create(req: Request) -> Response:
        _, inputs = guarded_inputs(req)
        for i, inp in enumerate(inputs):
            if not isinstance(inp, dict):
                errors.fail(400, f"Invalid input JSON: inputs[{i}] must be an object")
        emails = [
            str(inp.get("properties", {}).get("email", "")).lower()
            for inp in inputs
            if isinstance(inp.get("properties"), dict) and inp["properties"].get("email")
        ]
        _no_duplicates(emails)
        with state.lock:
            out = _Outcome(state.clock())
            plan: list[tuple[dict[str, str | None], Any]] = []
            checked: list[tuple[str, list[dict[str, Any]]]] = []
            for i, inp in enumerate(inputs):
                label = str(inp.get("objectWriteTraceId") or i)
                changes, details, conflict = check_changes(state, inp.get("properties"), None)
                checked.append((label, details))
                if details:
                    out.invalid(label, details)
                elif conflict:
                    out.conflict(label, conflict)
                else:
                    plan.append((changes, inp.get("objectWriteTraceId")))
            whole_batch_check(checked)
            for changes, trace in plan:
                c = state.create({k: v for k, v in changes.items() if v is not None})
                obj = c.to_json(None)
                if trace is not None:
                    obj["objectWriteTraceId"] = str(trace)
                out.results.append(obj)
            return out.response(201, state.clock())

    @app.route("POST", BASE + "/batch/archive", "contacts.batch.archive", rate_class="standard")
    def batch_archive(req: Request) -> Response:
        _, inputs = guarded_inputs(req)
        ids = [_input_id(inp, i) for i, inp in enumerate(inputs)]
        with state.lock:
            for key in ids:
                c = state.find(key)
                if c is not None:
                    state.archive(c)
        return Response(204)
