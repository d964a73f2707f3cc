"""In-order scoreboard: compares observed transactions with the golden model's."""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["Scoreboard"]


class Scoreboard:
    """Queue of expected transactions checked in order against observed ones.

    Mismatches are collected (the first few in full) rather than raised from inside a
    monitor callback, so a test reports every error of a run at once.
    """

    def __init__(self, name: str, max_reports: int = 5):
        self.name = name
        self.expected: deque = deque()
        self.matched = 0
        self.errors: list[str] = []
        self.max_reports = max_reports

    def expect(self, transactions, tag: str = "") -> None:
        self.expected.extend((tag, t) for t in transactions)

    def observe(self, got: Any) -> None:
        if not self.expected:
            self._error(f"unexpected transaction {got}")
            return
        tag, want = self.expected.popleft()
        if got == want:
            self.matched += 1
        else:
            self._error(f"{tag}: expected {want}, got {got}")

    def _error(self, text: str) -> None:
        self.errors.append(text)

    def report(self) -> str:
        lines = [f"{self.name}: {self.matched} matched, {len(self.errors)} mismatched, "
                 f"{len(self.expected)} missing"]
        lines += self.errors[: self.max_reports]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.expected
