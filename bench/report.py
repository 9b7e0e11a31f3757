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
one short table, picked from the output, console and taskworker results. A block whose JSON
is missing is left as it is and named on stderr. Nothing outside the markers changes.

    .venv/bin/python bench/output.py --json bench/results/output.json       # ~3 min
    .venv/bin/python bench/console.py --json bench/results/console.json     # ~6 min
    .venv/bin/python bench/taskworker.py --json bench/results/taskworker.json  # ~7 min
    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import argparse
import json
import re
import sys
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
    """One short table: ours and the peers measured beside it in the same run."""
    out = rows_of(results, "output")
    con = rows_of(results, "console")
    wide = rows_of(results, "taskworker", 1)

    def ingest(tool: str) -> str:
        rate, rss = pick(out, "rate", tool=tool), pick(out, "rss", tool=tool)
        if rate is None:
            return f"{tool.split()[0]}: {pick(out, 'received', tool=tool) or 'not measured'}"
        return f"{num(rate)} ({num(rss, '{:.0f}')} MB)"

    def idle(tool: str) -> str:
        cpu = pick(con, "value", what="idle CPU", tool=tool)
        return num(cpu, "{:.2f}") if cpu is not None else str(pick(con, "ok", tool=tool))

    def tasks(db: str, column: str) -> str:
        return num(pick(wide, column, database=db, workload="noop"))

    lines = [
        "| measured side by side | prodserver-tui | peers, same run |",
        "|---|---|---|",
        f"| headless ingest, lines/s (peak RSS of the tree, watchdog included) "
        f"| {ingest('prodserver-tui')} | honcho {ingest('honcho')}; mprocs {ingest('mprocs')}; "
        f"`cat` {ingest('flood | cat')} |",
        f"| full-screen ingest, lines/s (pane on screen) "
        f"| {num(pick(con, 'value', what='ingest', tool='prodserver-tui'))} "
        f"| mprocs {num(pick(con, 'value', what='ingest', tool='mprocs'))} |",
        f"| idle CPU, % of a core, 4 idle children "
        f"| {idle('prodserver-tui')} + {idle('prodserver-tui: tui.watchdog')} watchdog "
        f"| honcho {idle('honcho start')}; bare Textual app {idle('bare Textual')}; "
        f"mprocs {idle('mprocs')} |",
    ]
    for db, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        lines.append(
            f"| task worker, noop tasks/s, {name}: 1 x 1 / 2 x 1 "
            f"| {tasks(db, 'ours1x1@0')} / {tasks(db, 'ours2x1@0')} "
            f"| `db_worker` x 1 / x 2: {tasks(db, 'db_worker1x1@0')} / "
            f"{tasks(db, 'db_worker2x1@0')} (`CONN_MAX_AGE=0`), "
            f"{tasks(db, 'db_worker1x1@600')} / {tasks(db, 'db_worker2x1@600')} (600) |"
        )
    dates = sorted({describe_environment(d["env"]) for d in results.values()})
    note = "; ".join(f"_{d}_" for d in dates)
    return "\n".join(lines) + f"\n\n{note}\n"


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
