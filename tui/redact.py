"""Mask secrets wherever the console shows a command line or configuration.

People share screenshots, paste ``--check`` output into issues and run the console over SSH
with someone watching. A password in ARGS, a token in a webhook URL, a DSN read from the
environment or the project's ``SECRET_KEY`` must not appear on the screen, in headless logs
or in the snippet printed at quit. Every line the console itself writes (command lines, notes,
errors, findings) passes here, and three kinds of rule apply to it:

- values known to be secret (the settings' ``SECRET_KEY`` and database passwords, values under
  secret keys in ARGS and in the environment, and whatever the rules below find in them) are
  replaced wherever they appear, so an error quoting one out of context is masked too;
- shapes: a value after a key that looks secret (``K=V``, ``--k=v``, ``--k v``, ``"k": "v"``,
  ``Authorization: Bearer v``, ``?token=v``), URL credentials, ``user:password`` options,
  the password options of a few well-known tools (``redis-cli -a``, ``mysql -pX``) and the
  prefixes of well-known tokens (``sk_live_``, ``ghp_``, ``AKIA``, JWTs, private keys);
- a command line is read word by word (an argv, or text split as a shell splits it), so a
  flag can hide the word after it.

The output of the children themselves is theirs and is shown as it is.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MASK = "****"
# Words that make a key secret wherever they appear in it (``accessToken``, ``DB_PASSWORD``)...
_SECRET_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "credential", "apikey",
    "authorization", "requirepass", "masterauth", "privatekey",
)  # fmt: skip
# ...and words that do only as a whole part of it (``SECRET_KEY``, ``--auth``, ``SENTRY_DSN``,
# ``?sig=``, but not ``keyfile``, which is a path, nor ``author``).
_SECRET_PARTS = frozenset({"key", "pwd", "pw", "pass", "auth", "oauth", "dsn", "sig", "signature"})
# A key that ends with one of these names where the secret is, not the secret itself.
_NAME_PARTS = frozenset({"file", "path", "dir", "prefix", "id"})
_PARTS = re.compile(r"[^a-z0-9]+")
# Options that take ``user:password`` (curl, wget, httpie): the part after the colon is hidden.
_USER_KEYS = frozenset({"user", "proxy-user"})
# Environment variables whose names look secret but hold a path.
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
_MIN_VALUE = 6  # shorter values ("1", "yes") are masked by shape only, never by search
# The console shows at most 16384 characters of a line: a longer text (a megabyte setting) is
# cut here, so masking costs a bounded time and what is cut off is never shown to miss a mask.
_LONGEST = 32768


def _tools(names: str, **options: str) -> dict[str, dict[str, str]]:
    return dict.fromkeys(names.split(), options)


# Password options of well-known tools, which plain rules cannot know (``-p`` is a port for
# redis-cli and a pid file for gunicorn): "next" hides the next word, "attached" what follows
# the option in the same word (``-pSECRET``; mysql's ``-p db`` prompts, ``db`` is no secret),
# "user" the password of ``user:password`` in either place.
_TOOL_OPTIONS = {
    **_tools("redis-cli valkey-cli keydb-cli", **{"-a": "next"}),
    **_tools(
        "mysql mysqldump mysqladmin mysqlimport mysqlcheck mariadb mariadb-dump",
        **{"-p": "attached"},
    ),
    **_tools("mongosh mongo mongodump mongorestore mongoexport mongoimport", **{"-p": "next"}),
    **_tools("sshpass", **{"-p": "both"}),
    **_tools("curl", **{"-u": "user", "-U": "user"}),
    **_tools("openssl", **{"-passin": "next", "-passout": "next", "-pass": "next", "-k": "next"}),
}

# Tokens recognisable by their shape alone, whatever surrounds them. All but the private key
# start at a word boundary, tested once: most positions of a long text fail there at once.
_TOKENS = re.compile(
    r"""-----BEGIN[A-Z ]*PRIVATE\ KEY-----.*?(?:-----END[A-Z ]*PRIVATE\ KEY-----|\Z)
    | \b(?:
        (?:sk|rk)_(?:live|test)_[0-9A-Za-z]{8,}      # Stripe
      | whsec_[0-9A-Za-z]{16,}
      | (?:gh[pousr]_|github_pat_)\w{20,}           # GitHub
      | glpat-[\w-]{20,}                            # GitLab
      | xox[abposr]-[0-9A-Za-z-]{10,}               # Slack
      | (?:AKIA|ASIA)[0-9A-Z]{16}\b                 # AWS access key id
      | AIza[\w-]{35}                               # Google API key
      | eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*             # JWT
      | sk-[\w-]{20,}                               # OpenAI, Anthropic
      | (?:npm|hf)_[0-9A-Za-z]{30,}
      | SG\.[\w-]{16,}\.[\w-]{16,}                  # SendGrid
      | Bearer\ (?P<bearer>[\w.~+/=-]{8,})            # the scheme stays readable
    )""",
    re.VERBOSE | re.DOTALL,
)
# ``scheme://userinfo@``: the last ``@`` before the path ends it (a password may hold ``@``).
_URL_USERINFO = re.compile(r"""\b[a-z][a-z0-9+.-]*://([^\s/?#'"]*)@""", re.IGNORECASE)
_LONG_USER = 16  # a user name this long without a password is a token (``https://ghp_x@...``)
# ``key=``, ``--key=``, ``key: ``, ``"key": `` and ``'key': `` (JSON, a dict's repr, quoted
# again inside a string); ``_value`` then reads the value. ``scheme://`` is no key.
_KEY = re.compile(
    r"""(?<![\w.-])
    (?: (\\?["']) (-{0,2}[A-Za-z_][\w.-]*) \1 [ \t]*:
      | (-{0,2}[A-Za-z_][\w.-]*) (?: = | :(?!//) )
    )[ \t]*""",
    re.VERBOSE,
)
_SCHEME = re.compile(r"(?:Bearer|Basic|Token|Digest|Bot|ApiKey)[ \t]+", re.IGNORECASE)
_BARE = re.compile(r"""[^\s'"&;,)}\]]*""")
# A word as a shell reads it: quoted parts stay in it.
_WORD = re.compile(r"""(?:"(?:\\.|[^"\\])*"|'[^']*'|[^\s'"]|['"])+""")

Span = tuple[int, int]


def looks_secret(key: str) -> bool:
    """By the words in a key's name, in any spelling: ``DB_PASSWORD``, ``--api-key``,
    ``accessToken``, ``X-Amz-Signature``; not ``keyfile`` or ``SECRET_KEY_FILE`` (paths)."""
    parts = [p for p in _PARTS.split(key.lower()) if p]
    if not parts or parts[-1] in _NAME_PARTS:
        return False
    joined = "".join(parts)
    return any(word in joined for word in _SECRET_WORDS) or bool(_SECRET_PARTS.intersection(parts))


def _hides(key: str) -> str | None:
    """What a key hides of its value: "all", "user" (after the colon), or None."""
    if looks_secret(key):
        return "all"
    return "user" if key.lstrip("-").lower() in _USER_KEYS else None


class Redactor:
    """Masks known secret values and secrets by their shape (see the module's docstring)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        known = {v for v in values if len(v) >= _MIN_VALUE and v != MASK}
        self._values = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Text the console writes: a note, an error, a finding."""
        text = _bounded(self._known(text))
        return _masked(text, _spans(text))

    def argv(self, argv: Sequence[str]) -> list[str]:
        """An argv for display, word by word: ``--password x`` loses ``x``."""
        words = [_bounded(self._known(a)) for a in argv]
        by_word = _word_spans([(w, 0, len(w)) for w in words])
        return [_masked(w, [*_spans(w), *by_word.get(n, [])]) for n, w in enumerate(words)]

    def command(self, argv: Sequence[str]) -> str:
        """An argv as the one line ``--check`` and the ``-- command:`` note show."""
        return shlex.join(self.argv(argv))

    def value(self, value: Any, key: str | None = None) -> Any:
        """A settings value (an entry, its ARGS) with its secrets masked, same shape, for
        printing as source: ``{"api-key": "x"}`` -> ``{"api-key": "****"}``."""
        if isinstance(value, Mapping):
            return {k: self.value(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return type(value)(self.argv(value))
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, str):
            return self.argv([f"--{key}={value}"])[0].partition("=")[2] if key else self(value)
        hidden = value is not None and not isinstance(value, bool) and key and looks_secret(key)
        return MASK if hidden else value

    def _known(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    @classmethod
    def for_project(cls, settings: Any = None, environ: Mapping[str, str] = os.environ) -> Redactor:
        """Secrets of the project: the settings' SECRET_KEY and database passwords, and what
        the rules find in every entry and in the environment (a DSN in ``DATABASE_URL`` is
        then masked even where a message quotes its password alone)."""
        env = {k: v for k, v in environ.items() if k not in _NOT_SECRET_ENV}
        return cls([*_from_settings(settings), *_found(env)])


def _from_settings(settings: Any) -> Iterator[str]:
    if settings is None:
        return
    for name in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        yield from _strings(_setting(settings, name))
    databases = _setting(settings, "DATABASES")
    if isinstance(databases, Mapping):
        for db in databases.values():
            if isinstance(db, Mapping):
                yield from _strings(db.get("PASSWORD"))
    processes = _setting(settings, "PRODUCTION_PROCESSES")
    if isinstance(processes, Mapping):
        for spec in processes.values():
            yield from _found(spec)


def _setting(settings: Any, name: str) -> Any:
    """Django refuses to give an empty SECRET_KEY (ImproperlyConfigured): a project whose .env
    is missing has one, and the console must still start and say what else is wrong."""
    try:
        return getattr(settings, name, None)
    except Exception:
        return None


def _found(value: Any, key: str | None = None) -> Iterator[str]:
    """The secrets the rules find in a settings value or the environment, cut out."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _found(v, k if isinstance(k, str) else None)
    elif isinstance(value, list | tuple):
        words = [_bounded(v) for v in value if isinstance(v, str)]
        for n, spans in _word_spans([(w, 0, len(w)) for w in words]).items():
            yield from _cut(words[n], spans)
        for v in value:
            yield from _found(v)
    elif isinstance(value, str):
        value = _bounded(value)
        hides = _hides(key) if key is not None else None
        if hides == "all":
            yield value
        else:  # a string ARGS is a command line: ``_spans`` reads it word by word
            yield from _cut(value, [*_hidden(value, 0, len(value), hides), *_spans(value)])


def _bounded(text: str) -> str:
    return text if len(text) <= _LONGEST else text[:_LONGEST] + "…"


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


# -- finding secrets: each rule gives the spans of text to mask ---------------------------------


def _spans(text: str) -> list[Span]:
    """Every rule but the argv's own word boundaries."""
    words = [(text, m.start(), m.end()) for m in _WORD.finditer(text)]
    return [
        *(m.span("bearer") if m["bearer"] else m.span() for m in _TOKENS.finditer(text)),
        *_url_spans(text),
        *_pair_spans(text),
        *(span for spans in _word_spans(words).values() for span in spans),
    ]


def _url_spans(text: str) -> Iterator[Span]:
    for m in _URL_USERINFO.finditer(text):
        user, colon, password = m.group(1).partition(":")
        if colon and password:
            yield m.start(1) + len(user) + 1, m.end(1)
        elif not colon and len(user) >= _LONG_USER:
            yield m.span(1)


def _pair_spans(text: str) -> Iterator[Span]:
    """``key=value`` and its kin anywhere in the text, keys and values as they come."""
    pos = 0
    while (m := _KEY.search(text, pos)) is not None:
        hides = _hides(m.group(2) or m.group(3))
        start, end = _value(text, m.end())
        pos = m.end()
        if hides == "all" and end > start:
            yield start, end
            pos = end
        elif hides == "user" and ":" in text[start:end]:
            yield text.index(":", start) + 1, end
            pos = end


def _value(text: str, start: int) -> Span:
    """Where the value that starts at ``start`` lies: inside its quotes, after an
    authorisation scheme (``Bearer``), else up to a space or separator."""
    for quote in ('\\"', "\\'", '"', "'"):
        if text.startswith(quote, start):
            start += len(quote)
            end = start
            while (end := text.find(quote, end)) > 0 and len(quote) == 1 and text[end - 1] == "\\":
                end += 1
            return start, end if end >= 0 else len(text)
    if scheme := _SCHEME.match(text, start):
        start = scheme.end()
    return start, _BARE.match(text, start).end()  # type: ignore[union-attr]  # matches ""


def _word_spans(words: Sequence[tuple[str, int, int]]) -> dict[int, list[Span]]:
    """Rules that need word boundaries: a flag hides the next word, a tool's password
    option, a whole word ``KEY=value``. ``words`` are (text, start, end), one per word."""
    found: dict[int, list[Span]] = {}
    options: dict[str, str] = {}
    wants: str | None = None  # what the previous word hides of this one
    for n, (text, s, e) in enumerate(words):
        if e - s >= 2 and text[s] in "'\"" and text[s] == text[e - 1]:
            s, e = s + 1, e - 1  # a quoted word: its inside
        word = text[s:e]
        spans = found.setdefault(n, [])
        if wants and not word.startswith("-"):
            spans += _hidden(text, s, e, wants)
            wants = None
            continue
        wants = None
        options = _TOOL_OPTIONS.get(os.path.basename(word), options)
        for option, how in options.items():
            if word == option and how != "attached":
                wants = "all" if how in ("next", "both") else how
            elif word.startswith(option) and len(word) > len(option) and how != "next":
                spans += _hidden(text, s + len(option), e, "all" if how == "both" else how)
        key, eq, _ = word.partition("=")
        if eq and re.fullmatch(r"-{0,2}[A-Za-z_][\w.-]*", key):
            start, end = s + len(key) + 1, e
            if end - start >= 2 and text[start] == text[end - 1] and text[start] in "'\"":
                start, end = start + 1, end - 1
            spans += _hidden(text, start, end, _hides(key))
        elif word.startswith("-") and not eq:
            wants = wants or _hides(word)
    return found


def _hidden(text: str, start: int, end: int, how: str | None) -> list[Span]:
    if how == "user":
        colon = text.find(":", start, end)
        return [(colon + 1, end)] if colon >= 0 and colon + 1 < end else []
    return [(start, end)] if how and end > start else []


def _masked(text: str, spans: Iterable[Span]) -> str:
    """The text with each span, overlapping ones merged, replaced by the mask."""
    out: list[str] = []
    pos = -1
    for start, end in sorted(spans):
        if start <= pos:  # overlaps or touches the last one: one mask for both
            pos = max(pos, end)
            continue
        out += [text[max(pos, 0) : start], MASK]
        pos = end
    return "".join([*out, text[max(pos, 0) :]])


def _cut(text: str, spans: Iterable[Span]) -> Iterator[str]:
    for start, end in spans:
        if text[start:end] != MASK:
            yield text[start:end]
