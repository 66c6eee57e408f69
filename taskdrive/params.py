"""The base of every task type's parameters model, and the handling of secrets in them.

Parameters are camelCase JSON, like the rest of the API. A field typed ``SecretStr`` is a
secret: the API seals it (``taskdrive.secrets``) before the parameters go to Temporal, and
redacts it before they go to Postgres or any answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

REDACTED = "********"


class TaskParams(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def secret_fields(model: type[BaseModel]) -> list[str]:
    """The wire (alias) names of the model's top-level ``SecretStr`` fields."""
    return [
        info.alias or name
        for name, info in model.model_fields.items()
        if info.annotation in (SecretStr, SecretStr | None)
    ]


def redacted(model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every secret replaced by a placeholder: what Postgres and clients see."""
    return {
        key: (REDACTED if key in secret_fields(model) and value is not None else value)
        for key, value in params.items()
    }


def sealed_wire(model: BaseModel, seal: Callable[[str], str]) -> dict[str, Any]:
    """The parameters as the workflow gets them: JSON, each secret passed through ``seal``
    (a plain dump would mask them)."""
    wire = model.model_dump(mode="json", by_alias=True)
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            wire[info.alias or name] = seal(value.get_secret_value())
    return wire
