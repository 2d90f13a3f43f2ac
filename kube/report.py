"""PASS/FAIL lines for the container checks, collected so a run can end with one verdict."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Checks:
    indent: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": what, "ok": ok, "detail": detail})
        line = f"{self.indent}{'PASS' if ok else 'FAIL'} {what}"
        print(line + (f"  ({detail})" if detail else ""), flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)


def podman(
    *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=check
    )
