"""What to write in the settings to keep a scale chosen at run time.

Configuration is the settings file: a scale changed in the console lasts for the session
only. When the user quits with a knob away from its configured value, the console prints the
entry as it would be written to make that value permanent, so tuning under real load can be
kept by pasting rather than by remembering numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tui.project import Entry
from tui.redact import MASK, Redactor

INDENT = "    "


def snippet(entries: Sequence[Entry], redact: Redactor) -> str | None:
    """The changed entries as PRODUCTION_PROCESSES source, or None when nothing changed."""
    blocks: list[str] = []
    changes: list[str] = []
    for entry in entries:
        backend = entry.backend
        if backend is None:
            continue
        changed = {k: v for k, v in backend.scale.items() if v != backend.configured.get(k)}
        if not changed:
            continue
        changes += [
            f"{entry.name} {k} {backend.configured.get(k)} -> {v}" for k, v in changed.items()
        ]
        blocks.append(_entry_source(entry.name, backend.entry, changed, redact))
    if not blocks:
        return None
    head = f"Scaled at run time ({'; '.join(changes)}). To keep it, in PRODUCTION_PROCESSES:"
    text = "\n".join([head, *blocks])
    if MASK in text:
        text += f"\n{INDENT}# {MASK} marks a secret: keep your own value there"
    return text


def _entry_source(
    name: str, spec: Mapping[str, Any], changed: dict[str, int], redact: Redactor
) -> str:
    args = spec.get("ARGS")
    lines = [f"{INDENT}{name!r}: {{"]
    for key, value in spec.items():
        if key == "ARGS" and isinstance(args, Mapping):
            # Strings, as django-prodserver's own examples write every ARGS value.
            value = {**args, **{k: str(v) for k, v in changed.items()}}
        lines.append(f"{INDENT * 2}{key!r}: {redact.value(value, key)!r},")
    if not isinstance(args, Mapping):
        flags = " ".join(f"--{k}={v}" for k, v in changed.items())
        lines.append(f"{INDENT * 2}# ARGS is raw arguments: set {flags} in it")
    lines.append(f"{INDENT}}},")
    return "\n".join(lines)
