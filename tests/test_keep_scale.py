"""On quit, a scale changed at run time comes back as the settings that would keep it."""

from __future__ import annotations

import ast
from types import SimpleNamespace
from typing import Any

from backends.base import Project
from tui.keep_scale import snippet
from tui.project import Entry, build_entry
from tui.redact import Redactor

GUNICORN = "django_prodserver.backends.gunicorn.GunicornServer"
WORKER = "django_prodserver.backends.django_tasks.DjangoTasksWorker"
SETTINGS = SimpleNamespace(WSGI_APPLICATION="djproject.wsgi.application")


def _entry(name: str, spec: dict[str, Any]) -> Entry:
    built = build_entry(name, spec, Project("s", "/tmp", settings=SETTINGS))
    assert built.backend is not None, built.error
    return built


def test_nothing_changed_prints_nothing() -> None:
    assert (
        snippet([_entry("web", {"BACKEND": GUNICORN, "ARGS": {"workers": "2"}})], Redactor())
        is None
    )


def test_dict_args_come_back_as_pasteable_source_with_secrets_masked() -> None:
    web = _entry(
        "web",
        {"BACKEND": GUNICORN, "ARGS": {"bind": "127.0.0.1:8000", "workers": "2",
                                        "keyfile-password": "s3cret-pass"}, "GRACE": 30},
    )  # fmt: skip
    worker = _entry("tasks", {"BACKEND": WORKER, "ARGS": {"queue": "default"}})
    quiet = _entry("other", {"BACKEND": WORKER, "ARGS": {}})
    assert web.backend and worker.backend
    web.backend.scale["workers"] = 5
    worker.backend.scale["threads"] = 4
    worker.backend.scale["processes"] = 2
    settings = SimpleNamespace(PRODUCTION_PROCESSES={"web": web.backend.entry})
    kept = snippet([web, worker, quiet], Redactor.for_project(settings, environ={}))
    assert kept is not None
    head, *body = kept.splitlines()
    assert "web workers 2 -> 5" in head and "tasks processes 1 -> 2; tasks threads 1 -> 4" in head
    assert "other" not in kept and "s3cret-pass" not in kept
    source = "{" + "\n".join(line for line in body if not line.strip().startswith("#")) + "}"
    written = ast.literal_eval(source)
    assert written["web"]["ARGS"] == {
        "bind": "127.0.0.1:8000", "workers": "5", "keyfile-password": "****"
    }  # fmt: skip
    assert written["web"]["GRACE"] == 30 and written["web"]["BACKEND"] == GUNICORN
    assert written["tasks"]["ARGS"] == {"queue": "default", "processes": "2", "threads": "4"}
    assert "keep your own value there" in kept


def test_raw_args_get_an_instruction() -> None:
    web = _entry("web", {"BACKEND": GUNICORN, "ARGS": "--bind 127.0.0.1:8000 --workers 2"})
    assert web.backend
    web.backend.scale["workers"] = 3
    kept = snippet([web], Redactor())
    assert kept and "# ARGS is raw arguments: set --workers=3 in it" in kept
