"""docs/settings.md: every `MLSP_*` variable of every process, from the settings classes.

    python -m patterns.settings_doc            # print it
    python -m patterns.settings_doc --write    # rewrite docs/settings.md (`make docs` does)

The classes are found by importing the modules of serving/, training/ and patterns/; each one
derives from serving.settings.MlspSettings, and a field's description is its docstring.
tests/serving/test_settings.py fails when the file is stale, when a field has no docstring, or
when two unrelated classes declare the same field.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "settings.md"
PACKAGES = ("serving", "training", "patterns")
SKIP = ("locustfile", "__main__", "example")
"""Modules not imported: load tests (locust patches the runtime), entry points, walkthroughs."""


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class defined in the project, in module order."""
    found: list[type[BaseSettings]] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names = [package] + [
            m.name
            for m in pkgutil.walk_packages(root.__path__, f"{package}.")
            if m.name.rsplit(".", 1)[-1] not in SKIP
        ]
        for name in sorted(names):
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseSettings) and cls.__module__ == name and cls not in found:
                    found.append(cls)
    return found


def own_fields(cls: type[BaseSettings]) -> list[str]:
    """The fields `cls` declares itself (new ones, or a default changed)."""
    return [name for name in inspect.get_annotations(cls) if name in cls.model_fields]


def description(cls: type[BaseSettings], name: str) -> str | None:
    """The field's docstring, or that of the class it overrides a default of."""
    for klass in cls.__mro__:
        if (
            isinstance(klass, type)
            and issubclass(klass, BaseSettings)
            and name in own_fields(klass)
        ):
            text = klass.model_fields[name].description
            if text:
                return " ".join(text.split())
    return None


def variable(cls: type[BaseSettings], name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    prefix = str(cls.model_config.get("env_prefix", ""))
    return (prefix + name).upper()


def default(info: FieldInfo) -> str:
    value: Any = info.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, Path):
        value = str(value)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def kind(info: FieldInfo) -> str:
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("|", "\\|")


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def render() -> str:
    lines = [
        "# Settings",
        "",
        "Every process reads its configuration from environment variables (`MLSP_` prefix;",
        "unknown variables are ignored). Generated from the settings classes by",
        "`python -m patterns.settings_doc --write` (`make docs`); never edit by hand.",
        "A class lists the variables it declares; it also reads those of the classes it",
        "extends. A variable listed again under a subclass has another default there.",
        "",
    ]
    for cls in settings_classes():
        bases = [b for b in cls.__bases__ if issubclass(b, BaseSettings) and b is not BaseSettings]
        doc = inspect.getdoc(cls) or ""
        summary = " ".join(doc.split("\n\n")[0].split()) if cls.__doc__ else ""
        lines += [f"## `{qualified(cls)}`", ""]
        if summary:
            lines += [summary, ""]
        if bases:
            lines += ["Extends " + ", ".join(f"`{qualified(b)}`" for b in bases) + ".", ""]
        names = own_fields(cls)
        if not names:
            continue
        lines += ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
        for name in names:
            info = cls.model_fields[name]
            meaning = (description(cls, name) or "").replace("|", "\\|")
            row = [f"`{variable(cls, name, info)}`", kind(info), default(info), meaning]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patterns.settings_doc", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
