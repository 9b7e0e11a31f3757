"""What every check returns: one problem, its fix, and the entry it concerns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from backends.base import Backend

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One problem: ``what`` is wrong and how to ``fix`` it, each one sentence.

    ``code`` is stable (tests, docs and users' scripts match on it); ``entry`` is the
    PRODUCTION_PROCESSES name it concerns, ``None`` for the project as a whole.
    """

    severity: Severity
    code: str
    entry: str | None
    what: str
    fix: str
    topic: str = ""  # what else tells two findings of one code apart (a queue)

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Identity across polls: the text may change (12 ready, then 13), this does not."""
        return (self.code, self.entry, self.topic)

    def line(self) -> str:
        """``severity  entry: what — fix``: the one shape ``--check`` and headless print."""
        return f"{self.severity:<7}  {self.entry or 'project'}: {self.what} — {self.fix}"


class EntryLike(Protocol):
    """A PRODUCTION_PROCESSES entry as the console holds it (``tui.project.Entry``)."""

    name: str
    backend: Backend | None


def diff(
    before: Sequence[Finding], after: Sequence[Finding]
) -> tuple[list[Finding], list[Finding]]:
    """(appeared, cleared): what a stream of findings should print, not the whole list again.

    Findings are compared by `Finding.key`, so a count that changes in the text is the
    same finding, not a new one each poll.
    """
    old, new = {f.key for f in before}, {f.key for f in after}
    return [f for f in after if f.key not in old], [f for f in before if f.key not in new]
