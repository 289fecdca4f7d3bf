"""Pydantic models used as ``schema: "file_schemas:AppSettings"`` by the file-source tests.

The tests put this directory on ``sys.path`` (``monkeypatch.syspath_prepend``), as a user's
config repo would have its own package importable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Db(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    pool_size: int = Field(5, ge=1, le=100)


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: Db = Field(default_factory=Db)
    feature: dict[str, bool] = Field(default_factory=dict)
    name: str = "app"


class Strict(BaseModel):
    """Every key required."""

    model_config = ConfigDict(extra="forbid")

    name: str
    port: int


class Crashing(BaseModel):
    """A validator that crashes with something pydantic does not wrap."""

    name: str = ""

    @field_validator("name")
    @classmethod
    def _boom(cls, value: str) -> str:
        if value == "boom":
            raise KeyError("boom")
        return value


NOT_A_MODEL = 42


class Plain:
    """A class that is not a pydantic model."""
