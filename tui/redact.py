"""Mask secrets wherever the console shows a command line or configuration.

People share screenshots, paste ``--check`` output into issues and run the console over SSH
with someone watching. A database password passed as ``"ARGS": {"db-password": ...}``, a
broker URL with credentials or the project's ``SECRET_KEY`` must not appear on the screen or
in headless logs. Two rules, applied to every line the console itself writes (command lines,
notes, errors): a value whose key looks secret is replaced where the key is seen (``--token=x``,
``--token x``), and every value known to be secret (from ARGS, the environment and the Django
settings) is replaced wherever it appears. URL credentials are masked whatever their key.
The output of the children themselves is theirs and is shown as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Any

MASK = "****"
# Words that make a key secret wherever they appear in it (``accessToken``, ``DB_PASSWORD``)...
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey")
# ...and words that do only as a whole part of it (``SECRET_KEY``, ``--auth``, ``SENTRY_DSN``,
# but not ``keyfile``, which is a path, nor ``author``).
_SECRET_PARTS = frozenset({"key", "pwd", "pass", "auth", "dsn"})
_PARTS = re.compile(r"[^a-z0-9]+")
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^\s/:@]*):([^\s/@]+)@", re.IGNORECASE)
# Environment variables whose names look secret but hold a path.
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
_MIN_VALUE = 6  # shorter values ("1", "yes") are masked by key only, never by search


def looks_secret(key: str) -> bool:
    low = key.lower()
    return any(word in low.replace("_", "").replace("-", "") for word in _SECRET_WORDS) or bool(
        _SECRET_PARTS.intersection(_PARTS.split(low))
    )


class Redactor:
    """Masks a fixed set of secret values, flagged arguments and URL credentials."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        known = {v for v in values if len(v) >= _MIN_VALUE}
        self._values = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return _URL_CREDENTIALS.sub(rf"\1\2:{MASK}@", text)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """An argv for display: ``--password=x`` and ``--password x`` lose the value."""
        shown: list[str] = []
        hide_next = False
        for arg in argv:
            flag, eq, _ = arg.partition("=")
            if hide_next and not arg.startswith("-"):
                shown.append(MASK)
            elif flag.startswith("-") and eq and looks_secret(flag):
                shown.append(f"{flag}={MASK}")
            else:
                shown.append(self(arg))
            hide_next = arg.startswith("-") and not eq and looks_secret(arg)
        return shown

    @classmethod
    def for_project(cls, settings: Any = None, environ: Mapping[str, str] = os.environ) -> Redactor:
        """Secrets of the project: under secret keys in every entry's ARGS and in the
        environment, plus the settings' SECRET_KEY and database passwords."""
        env = {k: v for k, v in environ.items() if k not in _NOT_SECRET_ENV}
        return cls([*_from_settings(settings), *_under_secret_keys(env)])


def _from_settings(settings: Any) -> Iterator[str]:
    if settings is None:
        return
    for name in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        yield from _strings(getattr(settings, name, None))
    databases = getattr(settings, "DATABASES", None)
    if isinstance(databases, Mapping):
        for db in databases.values():
            if isinstance(db, Mapping):
                yield from _strings(db.get("PASSWORD"))
    processes = getattr(settings, "PRODUCTION_PROCESSES", None)
    if isinstance(processes, Mapping):
        for spec in processes.values():
            if isinstance(spec, Mapping):
                yield from _under_secret_keys(spec)
                yield from _under_secret_keys(spec.get("ARGS"))
                yield from _flagged(spec.get("ARGS"))


def _under_secret_keys(mapping: object) -> Iterator[str]:
    if isinstance(mapping, Mapping):
        for key, value in mapping.items():
            if isinstance(key, str) and looks_secret(key):
                yield from _strings(value)


def _flagged(args: object) -> Iterator[str]:
    """Values of secret flags in raw ARGS: ``["--token", "x"]`` or ``"--token=x"``."""
    if isinstance(args, str):
        args = args.split()
    if not isinstance(args, list | tuple):
        return
    words = [a for a in args if isinstance(a, str)]
    for arg, following in pairwise([*words, ""]):  # no words (ARGS []) gives no pair
        flag, eq, value = arg.partition("=")
        if flag.startswith("-") and looks_secret(flag):
            yield value if eq else following


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
