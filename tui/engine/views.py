"""What a client may know of the engine: frozen, serialisable views, and nothing to act on.

A client (the console in this process or in another terminal, headless, the control
commands) draws from these only, so the same screen works over the control socket: every
field is plain data with a JSON form (``to_json`` / ``from_json``), and times are wall-clock
(``time.time()``), which means the same thing in every process on the host.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
from typing import Any

from backends.diagnostics.finding import Finding
from backends.snapshot import Snapshot, WorkerCounts
from backends.snapshot import from_json as snapshot_from_json
from backends.snapshot import to_json as snapshot_to_json


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request (or never started); stays down until started
    BACKOFF = "backoff"  # ended by itself (code or signal, in ``detail``): restarting soon
    CONFIG_ERROR = "config-error"


@dataclass(frozen=True)
class Exit:
    code: int | None
    signal: int | None
    forced: bool  # had to be SIGKILLed after its grace period


@dataclass(frozen=True)
class Usage:
    cpu: float  # percent of one core, summed over the tree
    rss: int  # bytes, summed
    processes: int  # size of the tree
    children: int  # direct children of the main process: gunicorn's workers, our worker's
    threads: int  # OS threads over the tree
    pids: frozenset[int]  # the tree, to attribute task statistics to this entry


@dataclass(frozen=True)
class KnobView:
    """One scaling knob as the pane shows it."""

    name: str
    live: bool  # changes while the process runs; otherwise by a graceful restart
    desired: int  # what the user asked for
    configured: int  # what the settings say
    observed: int | None  # what the running process has, when known
    converging: bool  # a scale is under way: "scaling observed→desired"
    why: str | None  # the scale could not converge, and why


@dataclass(frozen=True)
class Events:
    """What a web server's or Celery's output counts: per second, and per kind over a minute."""

    per_second: float
    by_kind: dict[str, int]


@dataclass(frozen=True)
class WakeView:
    """How one process of a task worker hears of new tasks (`backends.wakeup_line`)."""

    pid: int
    mode: str  # notify, doorbell or polling


@dataclass(frozen=True)
class ProcessView:
    name: str
    kind: str
    state: State
    detail: str  # what the state waits for, in words (masked)
    pid: int | None
    started_at: float | None
    restarts: int
    last_exit: Exit | None
    next_try_at: float | None  # in backoff: when it is retried
    stop_at: float | None  # stopping: when SIGKILL follows
    usage: Usage | None
    tasks: WorkerCounts | None  # task workers: what its tree runs now, done in the last minute
    url: str | None  # where it answers HTTP (masked)
    probed: bool  # its HTTP answer is waited for
    ready_after: float | None
    healthy: bool | None
    answered_by: str | None  # who answers on its port instead of it
    knobs: tuple[KnobView, ...]
    main_knob: str | None  # what + and - scale
    queues: tuple[str, ...]  # task workers: the queues it serves ("*": all)
    events: Events | None
    wake_up: tuple[WakeView, ...]  # task workers: each live process's last report, by pid


@dataclass(frozen=True)
class EngineView:
    processes: tuple[ProcessView, ...]
    stats: Snapshot | None  # task statistics of the project (queues are shared by entries)
    findings: tuple[Finding, ...]  # masked and inert
    settings_module: str
    stopping: bool  # stopping everything: nothing starts again
    launched: bool = False  # every entry has been started once (or found broken)

    def process(self, name: str) -> ProcessView:
        for view in self.processes:
            if view.name == name:
                return view
        raise KeyError(name)


# -- JSON ------------------------------------------------------------------------------------


def to_json(view: EngineView) -> dict[str, Any]:
    return {
        "processes": [_process_json(p) for p in view.processes],
        "stats": None if view.stats is None else snapshot_to_json(view.stats),
        "findings": [asdict(f) for f in view.findings],
        "settings_module": view.settings_module,
        "stopping": view.stopping,
        "launched": view.launched,
    }


def from_json(data: dict[str, Any]) -> EngineView:
    """The inverse of ``to_json``; a missing or mistyped field raises KeyError, TypeError or
    ValueError, which the caller reports as a broken answer."""
    stats = data["stats"]
    return EngineView(
        processes=tuple(_process_from_json(p) for p in data["processes"]),
        stats=None if stats is None else snapshot_from_json(stats),
        findings=tuple(Finding(**f) for f in data["findings"]),
        settings_module=str(data["settings_module"]),
        stopping=bool(data["stopping"]),
        launched=bool(data["launched"]),
    )


def _process_json(view: ProcessView) -> dict[str, Any]:
    data = {f.name: getattr(view, f.name) for f in fields(view)}
    data["state"] = str(view.state)
    data["last_exit"] = None if view.last_exit is None else asdict(view.last_exit)
    data["usage"] = (
        None if view.usage is None else {**asdict(view.usage), "pids": sorted(view.usage.pids)}
    )
    data["tasks"] = None if view.tasks is None else asdict(view.tasks)
    data["knobs"] = [asdict(k) for k in view.knobs]
    data["queues"] = list(view.queues)
    data["events"] = None if view.events is None else asdict(view.events)
    data["wake_up"] = [asdict(w) for w in view.wake_up]
    return data


def _process_from_json(data: dict[str, Any]) -> ProcessView:
    usage, exit_, tasks, events = data["usage"], data["last_exit"], data["tasks"], data["events"]
    return ProcessView(
        **{
            **{f.name: data[f.name] for f in fields(ProcessView)},
            "state": State(data["state"]),
            "last_exit": None if exit_ is None else Exit(**exit_),
            "usage": None
            if usage is None
            else Usage(**{**usage, "pids": frozenset(usage["pids"])}),
            "tasks": None if tasks is None else WorkerCounts(**tasks),
            "knobs": tuple(KnobView(**k) for k in data["knobs"]),
            "queues": tuple(data["queues"]),
            "events": None if events is None else Events(**events),
            "wake_up": tuple(WakeView(**w) for w in data["wake_up"]),
        }
    )
