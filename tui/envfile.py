"""Load the project's ``.env`` files into the environment, as honcho and foreman do.

A typical project's ``manage.py`` and ``wsgi.py`` call python-dotenv's ``load_dotenv()``; a
program that imports the settings without them (our task worker, the console's own statistics)
would otherwise read another database than the web server does, and tasks would sit READY for
ever. So the console loads the files into its own environment before it imports the settings,
and every child inherits them.

Rules (python-dotenv's, so children see what the project's own ``load_dotenv()`` would give):
the real environment wins over every file; of several ``--env-file``, a later one wins over an
earlier one (honcho's order); ``${VAR}`` is interpolated from the environment and the same
file; ``$(...)`` and backticks stay literal text: nothing is ever executed. A line the parser
cannot read, or that is not UTF-8, is skipped and named (file:line) as a warning; the rest of
the file still loads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.main import resolve_variables
from dotenv.parser import parse_stream

from backends.base import flat, plural
from backends.diagnostics.finding import Finding

MAX_BYTES = 4 * 1024 * 1024  # a .env is a page of settings; megabytes are a mistake
_MAX_NAMED = 5  # bad lines named in one finding; the rest are counted


class EnvFileError(Exception):
    """An ``--env-file`` the user named cannot be read (exit 2)."""


@dataclass
class Loaded:
    """One file: the values it set and the keys the real environment kept."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)  # the keys it put into the environment
    kept: list[str] = field(default_factory=list)  # set already: the environment wins
    findings: list[Finding] = field(default_factory=list)


def load(paths: Sequence[str], default_dir: Path, enabled: bool = True) -> list[Loaded]:
    """Load ``paths`` (``--env-file``), else ``default_dir/.env`` if it exists, into
    ``os.environ``; a later file wins over an earlier one, the environment over both."""
    if not enabled:
        return []
    if paths:
        files = [_read_named(Path(p)) for p in paths]
    else:
        default = default_dir / ".env"
        files = [_read_default(default)] if default.exists() else []
    loaded = [_parse(path, text, findings) for path, text, findings in files]
    before = set(os.environ)
    winner: dict[str, Loaded] = {}
    for file in loaded:
        for key in file.values:
            winner[key] = file
    for key, file in winner.items():
        if key in before:
            file.kept.append(key)
        else:
            os.environ[key] = file.values[key]
            file.applied.append(key)
    return loaded


def _read_named(path: Path) -> tuple[Path, bytes, list[Finding]]:
    try:
        return path, _read(path), []
    except OSError as e:
        raise EnvFileError(
            f"--env-file {path}: cannot read it ({e.strerror or e}); "
            "check the path, or drop --env-file to use the project's .env"
        ) from e


def _read_default(path: Path) -> tuple[Path, bytes, list[Finding]]:
    """The default ``.env`` was not asked for by name: unreadable, it is a warning only."""
    try:
        return path, _read(path), []
    except OSError as e:
        why = f"{path}: cannot read it ({e.strerror or e})"
        fix = "make it a readable file, or pass --no-env-file"
        return path, b"", [_finding("env-file-unreadable", path, why, fix)]


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise OSError(0, f"larger than {MAX_BYTES // 1024 // 1024} MiB, not an env file")
    return data


def _parse(path: Path, data: bytes, findings: list[Finding]) -> Loaded:
    text, not_utf8 = _decoded(data)
    loaded = Loaded(path, findings=findings)
    if not_utf8:
        loaded.findings.append(
            _finding(
                "env-file-encoding",
                path,
                f"{_lines(path, not_utf8)} not UTF-8 text, skipped",
                "save the file as UTF-8",
            )
        )
    pairs, bad = [], []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            bad.append(binding.original.line)
        elif binding.key is not None and binding.value is not None:
            pairs.append((binding.key, binding.value))
    if bad:
        loaded.findings.append(
            _finding(
                "env-file-syntax",
                path,
                f"{_lines(path, bad)} not a NAME=value line, skipped",
                "write each line as NAME=value (quote a value with spaces or #)",
            )
        )
    unusable = []
    for key, value in resolve_variables(pairs, override=False).items():
        if value is None:
            continue
        if not key or "=" in key or "\0" in key + value:
            unusable.append(key)
        else:
            loaded.values[key] = value
    if unusable:
        loaded.findings.append(
            _finding(
                "env-file-unusable",
                path,
                f"{path}: {plural(len(unusable), 'key')} cannot be environment variables "
                f"({', '.join(map(repr, unusable[:_MAX_NAMED]))}: an empty name, '=' or NUL)",
                "remove them or rename them",
            )
        )
    literal = [k for k, v in loaded.values.items() if "$(" in v or "`" in v]
    if literal:
        verb = "holds" if len(literal) == 1 else "hold"
        loaded.findings.append(
            Finding(
                "info",
                "env-file-literal",
                None,
                f"{path}: {', '.join(literal[:_MAX_NAMED])} {verb} $(...) or backticks, kept "
                "as literal text: nothing in a .env is executed",
                "write the command's output into the file if that is what you meant",
                topic=str(path),
            )
        )
    return loaded


def _decoded(data: bytes) -> tuple[str, list[int]]:
    """UTF-8 text line by line (a BOM dropped): a line that is not UTF-8 becomes empty, so the
    others keep their numbers, and its number is returned."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines, bad = [], []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append("")
            bad.append(number)
    return "\n".join(lines), bad


def _lines(path: Path, numbers: list[int]) -> str:
    """``/p/.env:3 is`` / ``/p/.env:3 (and lines 7, 9, 2 more) are``: file:line, as an
    editor's "go to" takes it, then the other lines."""
    first, rest = numbers[0], numbers[1:]
    if not rest:
        return f"{path}:{first} is"
    named = ", ".join(map(str, rest[:_MAX_NAMED]))
    more = f", {len(rest) - _MAX_NAMED} more" if len(rest) > _MAX_NAMED else ""
    return f"{path}:{first} (and lines {named}{more}) are"


def _finding(code: str, path: Path, what: str, fix: str) -> Finding:
    return Finding("warning", code, None, flat(what, 500), fix, topic=str(path))


def describe(file: Loaded) -> str:
    """``--check``'s line for one file: the keys it set (the redactor masks the values), then
    the keys it did not (the environment or a later file won)."""
    shown = [f"{k}={file.values[k]}" for k in file.applied]
    lost = [k for k in file.values if k not in file.applied and k not in file.kept]
    kept = f"; kept from the environment: {', '.join(file.kept)}" if file.kept else ""
    later = f"; a later file set: {', '.join(lost)}" if lost else ""
    return f"env file {file.path}: {' '.join(shown) or 'no keys set'}{kept}{later}"
