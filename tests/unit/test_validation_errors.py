"""The one formatter of pydantic errors (`hotreload.errors.describe_validation`), as the config,
the settings documents and the subscriber use it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hotreload.errors import (
    ValidationProblem,
    describe_validation,
    show_path,
    validation_problems,
)


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    port: int = 80


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[Host] = []
    token: str = ""

    @field_validator("token")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value) > 4:
            raise ValueError("too long")
        return value


def error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(data)
    return info.value


def test_each_problem_has_its_path_and_a_message_without_the_input() -> None:
    exc = error({"hosts": [{"name": "a", "port": "many", "colour": 1}, {}],
                 "token": "hunter2-secret", "extra": True})
    assert sorted(validation_problems(exc), key=lambda p: p.key) == [
        ValidationProblem(("extra",), "extra", "unknown key"),
        ValidationProblem(("hosts", 0, "colour"), "hosts[0].colour", "unknown key"),
        ValidationProblem(("hosts", 0, "port"), "hosts[0].port",
                          "Input should be a valid integer, unable to parse string as an integer"),
        ValidationProblem(("hosts", 1, "name"), "hosts[1].name", "required key is missing"),
        ValidationProblem(("token",), "token", "too long"),  # no "Value error, " prefix
    ]
    assert "hunter2" not in describe_validation(exc)


def test_one_line_with_an_origin_and_labels() -> None:
    exc = error({"token": "12345", "hosts": [{"name": "a", "port": "x"}]})
    assert describe_validation(exc) == (
        "hosts[0].port: Input should be a valid integer, unable to parse string as an integer; "
        "token: too long")
    assert describe_validation(exc, origin="app.yaml").startswith("app.yaml: hosts[0].port: ")
    labelled = describe_validation(exc, label=lambda p: f"{p.key} (line {len(p.loc)})")
    assert labelled.startswith("hosts[0].port (line 3): ")
    assert "\n" not in labelled


def test_a_problem_of_the_whole_value_is_at_the_top_level() -> None:
    exc = error(["not", "a", "mapping"])
    (problem,) = validation_problems(exc)
    assert (problem.loc, problem.key) == ((), "(top level)")
    assert show_path(["db", "hosts", 2, "port"]) == "db.hosts[2].port"
