"""``prodserver-tui``: find the project, validate its processes, then run them."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from backends.base import ConfigError, Project, one_line
from tui import version
from tui.engine.logfiles import LogFiles
from tui.keep_scale import snippet
from tui.outlet import Outlet
from tui.project import Entry, ProjectError, discover, entries
from tui.redact import Redactor
from tui.supervisor import Supervisor

EXAMPLES = """\
examples:
  prodserver-tui                      run every PRODUCTION_PROCESSES entry (from manage.py's folder)
  prodserver-tui web worker           run only these entries
  prodserver-tui --check              validate and print each entry's command line (writes nothing)
  prodserver-tui --headless           plain prefixed output, for CI, containers and pipes
  prodserver-tui --settings mysite.settings --pythonpath src
  prodserver-tui --demo               run the bundled demo project (web, task workers, load)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodserver-tui",
        description="Run and watch every process of a Django project's PRODUCTION_PROCESSES.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="entries to run (default: all)")
    p.add_argument("--settings", metavar="MODULE", help="Django settings module, as in Django")
    p.add_argument(
        "--pythonpath", metavar="DIR", action="append", default=[], help="add DIR to sys.path"
    )
    env = p.add_mutually_exclusive_group()
    env.add_argument(
        "--env-file",
        metavar="PATH",
        action="append",
        default=[],
        help="load variables from PATH instead of the project's .env (repeatable: a later "
        "file wins over an earlier one; the real environment wins over all)",
    )
    env.add_argument(
        "--no-env-file", action="store_true", help="load no .env file, not even the project's"
    )
    p.add_argument("--check", action="store_true", help="validate, print command lines, exit")
    p.add_argument("--headless", action="store_true", help="prefixed output instead of the UI")
    p.add_argument("--demo", action="store_true", help="run the bundled demo project")
    p.add_argument(
        "--ring-lines",
        type=_positive,
        default=10_000,
        metavar="N",
        help="lines of output kept per process, and (--headless) waiting for a slow reader "
        "before the oldest are skipped (default: %(default)s)",
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="also write each entry's output to DIR/NAME.log (made private: mode 700), "
        "rotated at 10 MB, 5 old files kept",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.check:
        # --check writes nothing: not even the bytecode of the project modules it imports.
        sys.dont_write_bytecode = True
    try:
        settings = args.settings
        if args.demo:
            from tui import demo

            settings = demo.prepare(check=args.check)
        # The demo is its own project: the .env of the folder it is started from is not its.
        load_env = not (args.no_env_file or args.demo)
        project = discover(settings, args.pythonpath, Path.cwd(), args.env_file, load_env)
        found = entries(project, args.names)
    except (ProjectError, RuntimeError) as e:
        print(f"prodserver-tui: error: {e}", file=sys.stderr)
        return 2
    redact = Redactor.for_project(project.settings)
    if args.check:
        for line in project.env_files:
            _say(redact(line))
        failed = check(found, redact)
        return max(failed, diagnose(project, found, redact, demo=args.demo))
    try:
        logs = LogFiles(args.log_dir) if args.log_dir else None
    except OSError as e:
        print(f"prodserver-tui: error: --log-dir: {e}", file=sys.stderr)
        return 2
    supervisor = Supervisor(
        found, ring_lines=args.ring_lines, redact=redact, project=project, logs=logs
    )
    if args.headless:
        from tui import headless

        return asyncio.run(
            headless.run(supervisor, sys.stdout.buffer, sys.stdout.isatty(), args.ring_lines)
        )
    try:
        code = asyncio.run(console(supervisor, project.settings_module)) or 0
    except KeyboardInterrupt:  # before the screen was up: its processes are stopped
        return 130
    kept = snippet(found, redact)
    if kept:  # a terminal that stopped reading gets two seconds to take it, not for ever
        outlet = Outlet(sys.stdout.fileno(), lambda _: b"")
        outlet.write(f"{kept}\n".encode())
        outlet.drain(2.0)
    return code


SCREEN_WAIT = 5.0  # s: the screen loads once no process is starting, or after this long


async def console(supervisor: Supervisor, settings_module: str) -> int | None:
    """The full-screen console, loaded once its processes have started.

    Loading and drawing the screen (Textual, the app) takes nearly a second of CPU, which on
    a small machine the processes booting the project need more: loaded beside them, the
    web server's first answer came 0.3-0.6 s later than under honcho on a 2-core machine. So
    the processes start first, a line says so, and the screen follows once none is starting
    (at most SCREEN_WAIT). A Ctrl+C meanwhile stops them as the screen's quit would.
    """
    loop = asyncio.get_running_loop()
    refuse = signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN
    pressed: list[bool] = []  # Ctrl+Z before the screen: refused, and said once it is up
    if refuse:
        loop.add_signal_handler(signal.SIGTSTP, pressed.append, True)
    await supervisor.start_all()
    outlet = Outlet(sys.stdout.fileno(), lambda _: b"")  # a terminal that does not read
    outlet.write(f"prodserver-tui: starting {', '.join(supervisor.children)}…\n".encode())
    outlet.drain(0.2)
    try:
        await supervisor.started(SCREEN_WAIT)
    except asyncio.CancelledError:
        await supervisor.stop_all()
        raise
    if refuse:  # the screen's own refusal takes over
        loop.remove_signal_handler(signal.SIGTSTP)
    from tui.app import ConsoleApp

    app = ConsoleApp(supervisor, settings_module, start=False)
    if pressed:
        app.action_suspend_process()  # the notice waits in the app's queue until it runs
    return await app.run_async()


def check(found: list[Entry], redact: Redactor) -> int:
    """One block per entry: its kind and resolved command line, or its error; 1 if any failed.
    Secrets are masked: this output gets pasted into issues."""
    width = max(len(e.name) for e in found)
    failed = False
    for entry in found:
        try:
            launch = entry.launch()
        except ConfigError as e:
            failed = True
            _say(f"{entry.name:<{width}}  error     {redact(str(e))}")
            continue
        _say(f"{entry.name:<{width}}  {entry.kind:<9} {redact.command(launch.argv)}")
        if entry.backend is not None and entry.backend.env:
            pairs = " ".join(f"{k}={v}" for k, v in entry.backend.env.items())
            _say(f"{'':<{width}}  env       {redact(pairs)}")
        for note in launch.notes:
            _say(f"{'':<{width}}  note      {redact(note)}")
    return 1 if failed else 0


def diagnose(project: Project, found: list[Entry], redact: Redactor, demo: bool = False) -> int:
    """The setup findings after the entries, one line each; 1 if any is an error. Read-only:
    Django's setup here leaves LOGGING alone, which would open (create) the project's log
    files."""
    from backends.diagnostics import check_setup

    project.settings.LOGGING_CONFIG = None
    findings = [*project.findings, *check_setup(project.settings, found, migrates_itself=demo)]
    for finding in findings:
        _say(redact(finding.line()))
    return 1 if any(f.severity == "error" for f in findings) else 0


def _say(text: str) -> None:
    """Settings may hold newlines and escapes; printed raw, a terminal would act on them."""
    print(one_line(text, 16384))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


if __name__ == "__main__":
    sys.exit(main())
