"""Django's own ``check --deploy``, on demand, in a fresh process of the project."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from backends.base import Project, flat
from backends.diagnostics.finding import Finding, Severity

CHECKLIST = "https://docs.djangoproject.com/en/stable/howto/deployment/checklist/"

# Runs in the project's own interpreter and environment: prints Django's check messages as JSON.
_DEPLOY_SCRIPT = """
import json, django
from django.core import checks
django.setup()
messages = checks.run_checks(include_deployment_checks=True)
print(json.dumps([
    {"level": m.level, "id": m.id or "", "msg": str(m.msg), "hint": str(m.hint or ""),
     "obj": "" if m.obj is None else str(m.obj)}
    for m in messages if not m.is_silenced()
]))
"""


def check_deploy(project: Project, timeout: float = 120.0) -> list[Finding]:
    """``manage.py check --deploy`` as findings, run in a fresh process of the project.

    A subprocess, not this process: the checks import every URLconf and model and may run
    user code (their own checks) that can hang, exit or print; the console must survive
    all of it, and a fresh process sees the code as it is now, not as it was at start.
    """
    try:
        done = subprocess.run(
            [project.python, "-c", _DEPLOY_SCRIPT],
            cwd=project.base_dir,
            env={**os.environ, **project.child_env()},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return [_deploy_failed(f"could not run the checks ({flat(e)})")]
    try:
        messages = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [_deploy_failed(f"the checks crashed ({flat(tail)})")]
    return [_from_check(m) for m in messages]


def _from_check(message: dict[str, Any]) -> Finding:
    from django.core.checks import ERROR, WARNING

    level = int(message["level"])
    severity: Severity = "error" if level >= ERROR else "warning" if level >= WARNING else "info"
    where = f"{message['obj']}: " if message["obj"] and message["obj"] != "?" else ""
    what = f"{where}{flat(message['msg'], 400)}"
    fix = flat(message["hint"], 400) or f"see Django's deployment checklist, {CHECKLIST}"
    return Finding(severity, message["id"] or "check", None, what, fix)


def _deploy_failed(why: str) -> Finding:
    return Finding(
        "error",
        "deploy-check-failed",
        None,
        f"manage.py check --deploy did not finish: {why}",
        "run python manage.py check --deploy to see why",
    )
