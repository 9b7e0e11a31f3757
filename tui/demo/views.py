"""Two tiny pages: one shows the task table's state, one adds work, so the web entry is real."""

from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django_tasks_db.models import DBTaskResult

from tui.demo import tasks

STATUSES = ("READY", "RUNNING", "SUCCESSFUL", "FAILED")


def index(request: HttpRequest) -> HttpResponse:
    """Counts by status as plain text: readable with curl and in the web pane's access log."""
    rows = DBTaskResult.objects.values_list("status").annotate(n=Count("id"))
    counts = dict.fromkeys(STATUSES, 0) | dict(rows)
    lines = ["prodserver-tui demo: task results by status", ""]
    lines += [f"{status:<11} {n}" for status, n in counts.items()]
    lines += ["", f"total       {sum(counts.values())}", "", "GET /enqueue/ adds a fast task."]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")


def enqueue(request: HttpRequest) -> HttpResponse:
    """GET is fine here: a demo button to press from a browser or curl, not a real API."""
    result = tasks.fast.enqueue()
    return HttpResponse(
        f"enqueued fast task {result.id}\n", content_type="text/plain; charset=utf-8"
    )
