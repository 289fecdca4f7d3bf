"""The docs site: generated reference pages up to date, every configuration key documented,
every page in the navigation, every Python block of the docs valid Python, README's quickstart
on its first screen. (``mkdocs build --strict`` itself runs in .ci/run; the complete programs of
the docs run in tests/integration/test_docs_programs.py.)"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest
import yaml

from hotreload.config import HotReloadConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = load_gen()


@pytest.mark.parametrize("page", sorted(GEN.PAGES, key=str), ids=lambda p: p.name)
def test_generated_page_is_up_to_date(page: Path) -> None:
    if page.read_text(encoding="utf-8") != GEN.PAGES[page]():
        pytest.fail(f"{page.relative_to(ROOT)} is stale; regenerate it: {GEN.REGENERATE}")


def test_the_cli_page_has_every_command() -> None:
    text = GEN.CLI_PAGE.read_text(encoding="utf-8")
    from hotreload.cli import cli

    for path in GEN._commands(cli):
        assert f"\n## hotreload {' '.join(path)}\n" in text
        assert f"Usage: hotreload {' '.join(path)} " in text


def section_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    for option in (annotation, *getattr(annotation, "__args__", ())):
        for inner in (option, *getattr(option, "__args__", ())):
            if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
                return inner
    return None


def walk(model: type[pydantic.BaseModel], prefix: str = "",
         env: str | None = "HOTRELOAD_") -> list[tuple[str, str | None, Any]]:
    """(key, environment variable, field) of every key, walked independently of docs/gen.py."""
    out = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        var = f"{env}{name.upper()}" if env else None
        out.append((key, var, field))
        inner = section_of(field.annotation)
        if inner is not None:
            is_list = getattr(field.annotation, "__origin__", None) is list
            out += walk(inner, f"{key}[]." if is_list else f"{key}.",
                        None if is_list else (f"{var}__" if var else None))
    return out


def test_every_configuration_key_is_in_the_reference_with_default_and_variable() -> None:
    page = GEN.CONFIG_PAGE.read_text(encoding="utf-8")
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `([^`]+)` \|.*$", page, flags=re.M)}
    keys = walk(HotReloadConfig)
    assert len(keys) > 60
    for key, var, field in keys:
        assert key in rows, f"{key} is not in docs/configuration-reference.md"
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", rows[key])[1:-1]]
        assert len(cells) == 5, rows[key]
        if var is not None:
            assert var in cells[3], (key, cells[3])
        if not field.is_required() and section_of(field.annotation) is None:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, int | float | str) and not isinstance(default, bool):
                assert str(default) in cells[2], (key, cells[2])
        assert cells[4], f"{key} has no meaning: add a #: comment above it in hotreload/config.py"
    assert set(rows) == {k for k, _, _ in keys}


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: Any) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        if isinstance(nav, list):
            return set().union(*(pages(item) for item in nav))
        if isinstance(nav, dict):
            return set().union(*(pages(item) for item in nav.values()))
        return set()

    assert pages(config["nav"]) == {p.name for p in DOCS.glob("*.md")}


def python_blocks(path: Path) -> list[tuple[str, str]]:
    """(title, code) of each ```python block (title: its ``title="..."`` or "")."""
    text = path.read_text(encoding="utf-8")
    return [(m[1] or "", m[2]) for m in
            re.finditer(r'^```python(?: title="([^"]+)")?\n(.*?)^```$', text, flags=re.M | re.S)]


DOC_BLOCKS = [(p, i, code) for p in sorted(DOCS.glob("*.md")) for i, (_, code)
              in enumerate(python_blocks(p))]


@pytest.mark.parametrize(("page", "index", "code"), DOC_BLOCKS,
                         ids=[f"{p.stem}-{i}" for p, i, _ in DOC_BLOCKS])
def test_every_python_block_of_the_docs_compiles(page: Path, index: int, code: str) -> None:
    # fragments may use await at the top, as in an async function's body
    compile(code, f"{page.name} block {index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_docs_have_complete_programs() -> None:
    titled = {title for p in DOCS.glob("*.md") for title, _ in python_blocks(p) if title}
    assert {"quickstart.py", "fastapi_try.py"} <= titled


def test_readme_quickstart_is_the_first_screen() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    first_screen = "\n".join(lines[:15])
    block = re.search(r"```bash\n(.*?)```", first_screen, flags=re.S)
    assert block is not None, "the README must open with its two commands"
    commands = [c for c in block[1].splitlines() if c.strip()]
    assert len(commands) == 2
    assert "pip install -e '.[dev]'" in commands[0] and "hotreload demo" in commands[0]
    assert "python -m pytest" in commands[1]
