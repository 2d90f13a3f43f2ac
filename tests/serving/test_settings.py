"""One settings root: every settings class derives from MlspSettings, every field has a
docstring, no field is declared by two unrelated classes, and docs/settings.md is current."""

from __future__ import annotations

import collections

import pytest

from patterns import settings_doc
from serving.queue import QueueSettings
from serving.settings import MlspSettings, ServingSettings

CLASSES = settings_doc.settings_classes()


def test_every_settings_class_has_the_one_root() -> None:
    assert len(CLASSES) > 20  # the walk found the project's classes, not a handful
    strays = [settings_doc.qualified(c) for c in CLASSES if not issubclass(c, MlspSettings)]
    assert strays == []


def test_every_field_has_a_docstring() -> None:
    missing = [
        f"{settings_doc.qualified(c)}.{name}"
        for c in CLASSES
        for name in settings_doc.own_fields(c)
        if not settings_doc.description(c, name)
    ]
    assert missing == []


def test_no_field_is_declared_twice() -> None:
    """A field is declared once; a subclass may change its default, an unrelated class may
    not declare it again (it would be a second variable of the same name)."""
    first: dict[str, list[str]] = collections.defaultdict(list)
    for cls in CLASSES:
        for name in settings_doc.own_fields(cls):
            ancestors = [b for b in cls.__mro__[1:] if isinstance(b, type) and b in CLASSES]
            if not any(name in settings_doc.own_fields(b) for b in ancestors):
                first[name].append(settings_doc.qualified(cls))
    assert {n: owners for n, owners in first.items() if len(owners) > 1} == {}


def test_the_prefix_and_docstrings_reach_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSP_REDIS_URL", "redis://127.0.0.1:1/3")
    monkeypatch.setenv("MLSP_MAX_BATCH", "7")
    assert QueueSettings().redis_url == "redis://127.0.0.1:1/3"
    assert ServingSettings().max_batch == 7
    described = ServingSettings.model_fields["max_batch"].description
    assert described == "Most rows accepted in one prediction request."


def test_docs_settings_md_is_current() -> None:
    assert settings_doc.DOC.read_text() == settings_doc.render(), (
        "docs/settings.md is stale: run `make docs`"
    )
