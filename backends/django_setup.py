"""``django.setup()`` for the console's own process, which may call it from several places.

The statistics poll and the diagnostics both need the app registry. Django cannot retry a
setup that failed (the second call says "populate() isn't reentrant", hiding the real cause),
so the first failure is kept and raised again, with its own words, on every later call.
"""

from __future__ import annotations

_first_failure: list[str] = []


class SetupFailed(RuntimeError):
    """The project's apps cannot be loaded in this process; the message is the first error."""


def setup_once() -> None:
    import django

    if _first_failure:
        raise SetupFailed(_first_failure[0])
    try:
        django.setup()
    except Exception as e:
        _first_failure.append(f"{type(e).__name__}: {e}")
        raise SetupFailed(_first_failure[0]) from e
