"""One doctor check's result, and how results add up to doctor's exit status."""

from __future__ import annotations

from dataclasses import dataclass, field

STATUS_ORDER = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail or skip
    summary: str
    action: str = ""
    details: dict = field(default_factory=dict)
