"""Rewrite the benchmark tables of README.md and docs/*.md from the bench scripts' JSON.

Why this exists
---------------
A figure in the documentation is worth what its measurement is: every table there is
generated from what a script in ``bench/`` wrote with ``--json``, with the date, the
machine and the versions it ran with, so re-running the scripts and then this one brings
every number up to date and none can drift from its script.

What it does
------------
Reads ``bench/results/NAME.json`` (``--results`` elsewhere) for each script NAME, and in
README.md and every ``docs/*.md`` replaces the text between ``<!-- bench:NAME -->`` and the
next ``<!-- /bench -->`` with NAME's tables as Markdown, preceded by a line saying when, on
what and with which command they were measured. ``<!-- bench:summary -->`` is the README's
one short table, picked from the output, console, taskworker and latency results. A block
whose JSON is missing is left as it is and named on stderr. Nothing outside the markers
changes.

    .venv/bin/python bench/output.py --json bench/results/output.json
    .venv/bin/python bench/console.py --json bench/results/console.json
    .venv/bin/python bench/taskworker.py --quick --json bench/results/taskworker.json
    .venv/bin/python bench/report.py

(durations and the longer scripts: docs/benchmarks.md, "Regenerating").
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, Table, describe_environment, log

BLOCK = re.compile(r"(<!-- bench:([a-z0-9_]+) -->\n)(.*?)(<!-- /bench -->)", re.S)


def caption(data: dict[str, Any]) -> str:
    minutes = data["seconds"] / 60
    return (
        f"_Measured {describe_environment(data['env'])}; `{data['command']}`, {minutes:.0f} min._"
    )


def render(data: dict[str, Any]) -> str:
    parts = [caption(data)]
    for raw in data["tables"]:
        table = Table.load(raw)
        parts.append(f"**{table.name}**\n\n{table.markdown()}")
        if table.notes:
            parts.append("\n".join(f"{n}  " for n in table.notes if n).rstrip())
    parts += [f"**Check failed:** {f}" for f in data["failed"]]
    return "\n\n".join(parts) + "\n"


# -- the README's one table ---------------------------------------------------------------------


def rows_of(results: dict[str, dict[str, Any]], script: str, index: int = 0) -> list[dict]:
    data = results.get(script)
    return data["tables"][index]["rows"] if data and len(data["tables"]) > index else []


def pick(rows: list[dict], field: str, **match: str) -> Any:
    """The field of the first row whose cells start with the given values, or None."""
    for row in rows:
        if all(str(row.get(k, "")).startswith(v) for k, v in match.items()):
            return row.get(field)
    return None


def num(value: Any, fmt: str = "{:,.0f}") -> str:
    if isinstance(value, int | float) and value == value:
        return fmt.format(value)
    return str(value) if value else "not measured"


def summary(results: dict[str, dict[str, Any]]) -> str:
    """One short table: ours and the peers measured beside it in the same run, and the ratio."""
    out = rows_of(results, "output")
    con = rows_of(results, "console")
    wide = rows_of(results, "taskworker", 1)

    def rate(tool: str) -> Any:
        return pick(out, "rate", tool=tool)

    def ingest(tool: str) -> str:
        if rate(tool) is None:
            return str(pick(out, "received", tool=tool) or "not measured")
        return f"{num(rate(tool))} ({num(pick(out, 'rss', tool=tool), '{:.0f}')} MB)"

    def idle(tool: str) -> Any:
        cpu = pick(con, "value", what="idle CPU", tool=tool)
        return cpu if cpu is not None else pick(con, "ok", tool=tool)

    def shown(tool: str) -> Any:
        return pick(con, "value", what="ingest", tool=tool)

    def tasks(db: str, column: str) -> Any:
        return pick(wide, column, database=db, workload="noop")

    def ratio(ours: Any, theirs: Any, what: str) -> str:
        if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs:
            return f"{ours / theirs:.1f}x {what}"
        return ""

    def joined(*texts: str) -> str:
        return ", ".join(t for t in texts if t)

    headless = joined(
        ratio(rate("prodserver-tui"), rate("honcho"), "honcho"),
        ratio(rate("prodserver-tui"), rate("mprocs"), "mprocs"),
    )
    ours_idle = idle("prodserver-tui")
    watchdog = idle("prodserver-tui: engine and watchdog")
    both = ours_idle + watchdog if isinstance(ours_idle, float) and watchdog else None
    lines = [
        "| measured side by side | prodserver-tui | peers, same run | ratio |",
        "|---|---|---|---|",
        f"| headless ingest, lines/s (peak RSS of the tree, watchdog included) "
        f"| {ingest('prodserver-tui')} | honcho {ingest('honcho')}; mprocs {ingest('mprocs')}; "
        f"`cat` {ingest('flood | cat')} "
        f"| {headless} |",
        f"| full-screen ingest, lines/s (pane on screen) "
        f"| {num(shown('prodserver-tui'))} | mprocs {num(shown('mprocs'))} "
        f"| {ratio(shown('prodserver-tui'), shown('mprocs'), 'mprocs')} |",
        f"| idle CPU, % of a core, 4 idle children "
        f"| {num(ours_idle, '{:.2f}')} + {num(watchdog, '{:.2f}')} engine and watchdog "
        f"| honcho {num(idle('honcho start'), '{:.2f}')}; "
        f"bare Textual app {num(idle('bare Textual'), '{:.2f}')}; "
        f"mprocs {num(idle('mprocs'), '{:.2f}')} "
        f"| {ratio(both, idle('bare Textual'), 'a bare Textual app')} |",
    ]
    for db, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        ours, theirs = tasks(db, "ours1x1@0"), tasks(db, "db_worker1x1@0")
        persistent = tasks(db, "db_worker1x1@600")
        lines.append(
            f"| task worker, noop tasks/s, {name}: 1 x 1 / 2 x 1 "
            f"| {num(ours)} / {num(tasks(db, 'ours2x1@0'))} "
            f"| `db_worker` x 1 / x 2: {num(theirs)} / {num(tasks(db, 'db_worker2x1@0'))} "
            f"(`CONN_MAX_AGE=0`), {num(tasks(db, 'db_worker1x1@600'))} / "
            f"{num(tasks(db, 'db_worker2x1@600'))} (600) "
            f"| {joined(ratio(ours, theirs, 'db_worker'), ratio(ours, persistent, 'persistent'))} |"
        )
    lines += latency_lines(results, ratio, joined)
    srv = rows_of(results, "server")
    attach = pick(
        srv,
        "value",
        what="launch -> 10 titles with states on screen, ms",
        tool="prodserver-tui attach (engine up, 10 entries)",
    )
    if attach is not None:
        fed = pick(
            srv, "value", what="flood lines/s delivered", tool="prodserver-tui attach, tmux 160x48"
        )
        peer = pick(
            srv,
            "value",
            what="flood lines/s delivered",
            tool="mprocs (pty 120x40, as bench/output.py)",
        )
        idle_engine = pick(
            srv,
            "value",
            what="idle CPU, % of a core: engine + watchdog",
            tool="prodserver-tui up, no client",
        )
        lines += [
            f"| server mode: `attach` to a first full screen of 10 entries, ms (target 500) "
            f"| {num(attach)} | | |",
            f"| server mode: lines/s reaching an attached console while a child floods "
            f"| {num(fed)} | mprocs {num(peer)} | {ratio(fed, peer, 'mprocs')} |",
            f"| server mode: engine idle CPU, % of a core, 4 idle entries, no client "
            f"| {num(idle_engine, '{:.2f}')} (watchdog included) | | |",
        ]
    start = rows_of(results, "startup")
    for project, what in (("big", "a project of 400 admin models"), ("demo", "the demo")):

        def at(field: str, tool: str, fmt: str = "{:.0f}", project: str = project) -> str:
            return num(pick(start, field, project=project, tool=tool), fmt)

        ours = pick(start, "first200", project=project, tool="prodserver-tui")
        if ours is None:
            continue
        theirs = pick(start, "first200", project=project, tool="honcho")
        lines.append(
            f"| start-up on {what}: first HTTP 200, s (own RSS, MB) "
            f"| {num(ours, '{:.2f}')} ({at('main', 'prodserver-tui')} "
            f"+ statistics helper {at('helper', 'prodserver-tui')}) "
            f"| honcho {num(theirs, '{:.2f}')} ({at('main', 'honcho')}) "
            f"| {at('ratio', 'prodserver-tui', '{:.2f}')}x honcho (target 1.1x) |"
        )
    return "\n".join(lines) + "\n\n" + measured(results) + "\n"


def latency_lines(
    results: dict[str, dict[str, Any]],
    ratio: Callable[[Any, Any, str], str],
    joined: Callable[..., str],
) -> list[str]:
    """bench/latency.py's rows: enqueue to start, and idle statements, per database."""
    waits, idle = rows_of(results, "latency"), rows_of(results, "latency", 1)
    lines = []
    for db, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):

        def wait(worker: str, label: str = "", db: str = db) -> str:
            p50 = pick(waits, "p50", database=db, worker=worker)
            p95 = pick(waits, "p95", database=db, worker=worker)
            if not isinstance(p50, int | float):
                return ""  # not measured: --wake missing, or a run that did not finish
            return f"{label}{num(p50, '{:,.1f}')} / {num(p95, '{:,.1f}')}"

        def load(worker: str, db: str = db) -> str:
            django = pick(idle, "django", database=db, worker=worker)
            counted = pick(idle, "counted", database=db, worker=worker)
            return f"{num(django, '{:,.0f}')} ({num(counted, '{:,.0f}')})"

        ours = pick(waits, "p50", database=db, worker="ours, defaults")
        if ours is not None:
            theirs = pick(waits, "p50", database=db, worker="db_worker (interval 1 s)")
            target = "p50 20" if db == "sqlite" else "p50 10, p95 30"
            lines.append(
                f"| task start after `.enqueue()`, {name}, 5 tasks/s: p50 / p95 ms "
                f"(target {target}) "
                f"| {joined(wait('ours, defaults'), wait('ours --wake poll', '`--wake poll` '))} "
                f"| `db_worker` {wait('db_worker (interval 1 s)')}; "
                f"{wait('db_worker --interval 0.1', '`--interval 0.1` ')} "
                f"| {ratio(theirs, ours, 'sooner than db_worker (p50)')} |"
            )
        quiet = pick(idle, "django", database=db, worker="ours, defaults")
        if quiet is not None:
            peer = pick(idle, "django", database=db, worker="db_worker (interval 1 s)")
            lines.append(
                f"| idle worker, {name}: statements/min on an empty queue "
                f"(as the database counts them) "
                f"| {load('ours, defaults')} | `db_worker` {load('db_worker (interval 1 s)')}; "
                f"`--interval 0.1` {load('db_worker --interval 0.1')} "
                f"| {ratio(quiet, peer, 'db_worker')} |"
            )
    return lines


SUMMARISED = ("output", "console", "taskworker", "latency", "startup", "server")


def load(env: dict[str, str]) -> str:
    """The 1-minute load average at the start, and at the end where it was recorded."""
    first = env["load"].split(",")[0]
    return f"{first} to {env['load_end'].split(',')[0]}" if "load_end" in env else first


VERSIONS = {
    "python": "Python",
    "django": "Django",
    "textual": "Textual",
    "gunicorn": "gunicorn",
    "psycopg": "psycopg",
    "postgresql": "PostgreSQL",
}


def measured(results: dict[str, dict[str, Any]]) -> str:
    """When and on what: the versions the results summed up ran with (each script's where
    they differ), each script's date and load, and its machine where they ran on more than
    one."""
    shown = {n: d["env"] for n, d in results.items() if n in SUMMARISED}
    machines = {e["machine"] for e in shown.values()}
    runs = ", ".join(
        f"{name} {e['date']} (load average {load(e)}"
        + (f"; {e['machine']})" if len(machines) > 1 else ")")
        for name, e in shown.items()
    )
    machine = "several machines" if len(machines) > 1 else machines.pop()
    return f"_{machine}; {versions(shown)}. Measured: {runs}._"


def versions(shown: dict[str, dict[str, Any]]) -> str:
    """``Django 5.2.19``, or ``Django 5.2.19 (console, server), 5.2.20 (latency)``."""
    said = []
    for key, label in VERSIONS.items():
        by: dict[str, list[str]] = {}
        for name, env in shown.items():
            by.setdefault(str(env.get(key, "?")), []).append(name)
        if len(by) == 1:
            said.append(f"{label} {next(iter(by))}")
        else:
            said.append(f"{label} " + ", ".join(f"{v} ({', '.join(n)})" for v, n in by.items()))
    return ", ".join(said)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    results = {f.stem: json.loads(f.read_text()) for f in sorted(args.results.glob("*.json"))}
    blocks = {name: render(data) for name, data in results.items()}
    if results.keys() & {"output", "console", "taskworker"}:
        blocks["summary"] = summary(results)
    missing: set[str] = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()

        def fill(m: re.Match[str]) -> str:
            if m.group(2) not in blocks:
                missing.add(m.group(2))
                return m.group(0)
            return m.group(1) + "\n" + blocks[m.group(2)] + "\n" + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text:
            doc.write_text(new)
            log(f"rewrote {doc.relative_to(REPO)}")
    for name in sorted(missing):
        log(f"no results for <!-- bench:{name} --> (run bench/{name}.py --json ...): left as is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
