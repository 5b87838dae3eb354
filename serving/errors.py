"""Client errors that name the offending field, and their conversion from pydantic validation errors."""

from __future__ import annotations

import json

from pydantic import ValidationError

from serving.schema import ErrorResponse, FieldError


class InputError(Exception):
    """A request the server refuses: HTTP status (4xx) and one entry per problem, each naming a field."""

    def __init__(self, status: int, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.status = status
        self.errors = errors

    @classmethod
    def one(cls, status: int, field: str, message: str) -> InputError:
        """An error with a single problem."""
        return cls(status, [FieldError(field=field, message=message)])

    def body(self) -> ErrorResponse:
        """The JSON body sent to the client."""
        return ErrorResponse(error=str(self), errors=self.errors)


def _part(p: int | str) -> str:
    """A path element as written: a plain name as is, anything else (empty, dots, spaces) as a JSON string."""
    text = str(p)
    return text if text and all(c.isalnum() or c == "_" for c in text) else json.dumps(text, ensure_ascii=False)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(_part(p) for p in loc) if loc else "body"


def _message(err: dict) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        return "not valid JSON: " + str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "model_type":
        return "must be a JSON object"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def from_validation(e: ValidationError) -> InputError:
    """A 400 for a body that is not JSON, else a 422 listing every invalid field."""
    errors = e.errors(include_url=False, include_input=False)
    status = 400 if any(err["type"] == "json_invalid" for err in errors) else 422
    return InputError(status, [FieldError(field=_field(err["loc"]), message=_message(err)) for err in errors])
