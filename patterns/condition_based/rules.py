"""condition_based's routing rules: what a request must show for a rule to take it.

A rules file (YAML, MLSP_ROUTES_FILE; on Kubernetes the ConfigMap condition-based-routes):

    timezone: Asia/Tokyo               # the zone local-time windows are read in
    rules:                             # in order: the first rule whose conditions all hold wins
      - name: mountain
        when: {header: {X-Target: mountain}}
        backend: iris-rf
      - name: images
        when: {content_type: "image/*"}
        backend: digits-lr
      - name: night
        when: {time: {start: "22:00", end: "06:00"}}
        backend: iris-rf
      - name: default                  # mandatory, last: no conditions
        backend: iris-svc

Conditions: `header` (names case-insensitive, values exact), `query` (parameters, exact),
`content_type` (a glob on the media type, parameters ignored: `image/*`), `time` (a window of
local time, `start` included, `end` excluded, across midnight when `end` < `start`). A rule
with several conditions needs all of them. The last rule, and only it, has none: the default,
so every request has exactly one route and an unmatched one never fails.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time
    """First minute of the window (HH:MM), included."""
    end: time
    """End of the window (HH:MM), excluded; before `start`: the window crosses midnight."""

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window is empty (or all day?)")
        return self

    def holds(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class When(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header: dict[str, str] | None = None
    query: dict[str, str] | None = None
    content_type: str | None = Field(None, pattern=r"^[\w.+*-]+/[\w.+*-]+$")
    time: Window | None = None

    def empty(self) -> bool:
        return not (self.header or self.query or self.content_type or self.time)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    when: When = Field(default_factory=When)
    backend: str


class Routes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    """The IANA zone local-time windows are read in (from the system's tz database, which the
    Debian-based images carry: /usr/share/zoneinfo)."""
    rules: list[Rule] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_default_last(self) -> Routes:
        names = [r.name for r in self.rules]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        for i, rule in enumerate(self.rules[:-1]):
            if rule.when.empty():
                raise ValueError(
                    f"rules[{i}] ({rule.name}) has no conditions: it would take every request "
                    "and the rules after it would never be reached (the default goes last)"
                )
        if not self.rules[-1].when.empty():
            raise ValueError(
                f"the last rule ({self.rules[-1].name}) has conditions: a default rule with "
                "none is mandatory, last, so an unmatched request still has a route"
            )
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Facts:
    """What the rules may look at in one request."""

    headers: Mapping[str, str]
    """Lower-case names."""
    query: Mapping[str, str]
    content_type: str | None
    """The media type, lower case, without parameters."""
    local: datetime
    """Now, in the rules' zone."""


def media_type(value: str | None) -> str | None:
    return value.split(";", 1)[0].strip().lower() or None if value else None


def check(when: When, facts: Facts) -> tuple[bool, str]:
    """Whether every condition holds, and why not (the first that does not) or why so."""
    for name, want in (when.header or {}).items():
        got = facts.headers.get(name.lower())
        if got != want:
            return False, f"header {name} is {got!r}, not {want!r}" if got else f"no {name} header"
    for name, want in (when.query or {}).items():
        got = facts.query.get(name)
        if got != want:
            return False, f"query {name} is {got!r}, not {want!r}" if got else f"no {name} in query"
    if when.content_type is not None:
        got = facts.content_type
        if got is None or not fnmatch.fnmatchcase(got, when.content_type.lower()):
            return False, f"content type {got or 'absent'} is not {when.content_type}"
    if when.time is not None:
        now = facts.local.time().replace(second=0, microsecond=0)
        if not when.time.holds(now):
            return False, f"{now:%H:%M} is outside {when.time}"
    return True, "no conditions: the default" if when.empty() else "every condition holds"


def route(routes: Routes, facts: Facts) -> tuple[Rule, list[dict[str, Any]]]:
    """The first rule that takes the request (there always is one: the default), and each
    rule's verdict up to it."""
    trace = []
    for rule in routes.rules:
        matched, why = check(rule.when, facts)
        trace.append({"rule": rule.name, "backend": rule.backend, "matched": matched, "why": why})
        if matched:
            return rule, trace
    raise AssertionError("a validated rule list ends with its default")
