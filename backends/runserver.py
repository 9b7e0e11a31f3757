"""Django's development server, for a laptop: the same console in development and production."""

from __future__ import annotations

from backends.base import Backend, flags_from_dict


class RunServer(Backend):
    """ARGS ``{"addrport": "127.0.0.1:8000", "noreload": None}``; ``bind`` means addrport too."""

    kind = "runserver"

    def url(self) -> str | None:
        addrport = str(self.options.get("addrport") or self.options.get("bind") or "8000")
        return f"http://{addrport if ':' in addrport else '127.0.0.1:' + addrport}"

    def argv(self) -> list[str]:
        options = dict(self.options)
        addrport = options.pop("addrport", None) or options.pop("bind", None)
        positional = [str(addrport)] if addrport else []
        return self.django_command("runserver", *flags_from_dict(options), *self.extra, *positional)
