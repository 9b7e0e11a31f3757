"""``prodserver-tui``: find the project, validate its processes, then run them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

from backends.base import ConfigError, Project, one_line
from tui import version
from tui.control import locate
from tui.engine import host, place, systemd
from tui.engine.local import LocalEngine
from tui.engine.logfiles import LogFiles
from tui.engine.supervisor import Supervisor
from tui.project import Entry, ProjectError, discover, entries
from tui.redact import Redactor

EXAMPLES = """\
examples:
  prodserver-tui                      run every PRODUCTION_PROCESSES entry (from manage.py's folder)
  prodserver-tui web worker           run only these entries (`run NAME...` if one is named `up`)
  prodserver-tui --check              validate and print each entry's command line (writes nothing)
  prodserver-tui --headless           plain prefixed output, for CI, containers and pipes
  prodserver-tui --settings mysite.settings --pythonpath src
  prodserver-tui --demo               run the bundled demo project (web, task workers, load)

on a server (the processes outlive the terminal):
  prodserver-tui up                   start the engine detached; one status line per entry
  prodserver-tui attach [--read-only] the console on it; q detaches, everything goes on
  prodserver-tui status [--json]      one line per entry (or the stable JSON of docs/protocol.md)
  prodserver-tui logs [NAME...] [-n N] [-f]
  prodserver-tui start|stop|restart NAME...
  prodserver-tui scale NAME KNOB=VALUE...
  prodserver-tui down                 stop everything gracefully (task workers drain) and the engine
  prodserver-tui systemd-unit         a systemd unit that runs this project's engine
"""
CLIENTS = {"attach", "status", "logs", "start", "stop", "restart", "scale", "down"}
COMMANDS = {"run", "up", "engine", "systemd-unit", *CLIENTS}


def project_options(p: argparse.ArgumentParser) -> None:
    """How the project is found: the same for the engine and for every client command, which
    find its engine by them (the project folder and settings module name its socket)."""
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
    p.add_argument("--demo", action="store_true", help="the bundled demo project")
    p.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the engine's control socket (default: derived from the project; "
        f"{place.ENV_SOCKET} also sets it)",
    )


def run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="entries to run (default: all)")
    p.add_argument(
        "--ring-lines",
        type=_positive,
        default=10_000,
        metavar="N",
        help="lines of output kept per process, and (--headless) waiting for a slow reader "
        "before the oldest are skipped (default: %(default)s)",
    )
    logs = p.add_mutually_exclusive_group()
    logs.add_argument(
        "--log-dir",
        metavar="DIR",
        help="where each entry's output is also written, to NAME.log (made private: mode 700; "
        "default: the engine's state folder, see docs/protocol.md)",
    )
    logs.add_argument("--no-log-files", action="store_true", help="write no log files")
    p.add_argument(
        "--log-size",
        type=_positive,
        default=10,
        metavar="MB",
        help="a log file is rotated at this size (default: %(default)s)",
    )
    p.add_argument(
        "--log-keep",
        type=int,
        default=5,
        metavar="N",
        help="rotated log files kept per entry (default: %(default)s)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodserver-tui",
        description="Run and watch every process of a Django project's PRODUCTION_PROCESSES.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_options(p)
    project_options(p)
    p.add_argument("--check", action="store_true", help="validate, print command lines, exit")
    p.add_argument("--headless", action="store_true", help="prefixed output instead of the UI")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return p


def command_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"prodserver-tui {command}")
    project_options(p)
    if command in ("up", "engine"):
        run_options(p)
    if command == "engine":  # the engine process itself: started by the console or by ``up``
        p.add_argument("--owner-fd", type=int, default=None)
    elif command == "attach":
        p.add_argument("--read-only", action="store_true", help="look, never act")
    elif command == "status":
        p.add_argument("--json", action="store_true", help="docs/protocol.md's stable JSON")
    elif command == "logs":
        p.add_argument("names", nargs="*", metavar="NAME", help="entries (default: all)")
        p.add_argument("-n", type=int, default=100, metavar="N", help="lines each (default 100)")
        p.add_argument("-f", "--follow", action="store_true", help="then follow new lines")
    elif command in ("start", "stop", "restart"):
        p.add_argument("names", nargs="+", metavar="NAME")
    elif command == "scale":
        p.add_argument("name", metavar="NAME")
        p.add_argument("knobs", nargs="+", metavar="KNOB=VALUE")
    elif command == "systemd-unit":
        run_options(p)
        p.add_argument("--user", metavar="ACCOUNT", help="a system unit run as ACCOUNT")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    if command == "run":
        args = parser().parse_args(argv[1:] if argv and argv[0] == "run" else argv)
    else:
        args = command_parser(command).parse_args(argv[1:])
    if command in CLIENTS:
        from tui import control

        return control.main(command, args)
    if getattr(args, "check", False):
        # --check writes nothing: not even the bytecode of the project modules it imports.
        sys.dont_write_bytecode = True
    if command == "run" and not args.check and not args.headless:
        from tui import control

        return control.foreground(argv)
    if command == "up":
        from tui import control

        return control.up(argv[1:], args)
    checking = getattr(args, "check", False)
    try:
        project, found = load(args, check=checking)
    except (ProjectError, RuntimeError) as e:
        print(f"prodserver-tui: error: {e}", file=sys.stderr)
        return 2
    redact = Redactor.for_project(project.settings)
    if checking:  # needs no place: it writes nothing and serves nothing
        for line in project.env_files:
            _say(redact(line))
        failed = check(found, redact)
        return max(failed, diagnose(project, found, redact, demo=args.demo))
    try:
        where = locate(args, project.settings_module)
        if command == "systemd-unit":
            return unit(args, project, found, where, redact)
        logs = log_files(args, where)
    except (OSError, ValueError) as e:
        print(f"prodserver-tui: error: {e}", file=sys.stderr)
        return 2
    supervisor = Supervisor(
        found, ring_lines=args.ring_lines, redact=redact, project=project, logs=logs
    )
    return asyncio.run(serve(command, args, LocalEngine(supervisor), where))


def log_files(args: argparse.Namespace, where: place.Place) -> LogFiles | None:
    if args.no_log_files:
        return None
    folder = Path(args.log_dir) if args.log_dir else where.state / "logs"
    return LogFiles(folder, max_bytes=args.log_size * 1_000_000, keep=args.log_keep)


def load(args: argparse.Namespace, check: bool = False) -> tuple[Project, list[Entry]]:
    """The project and its entries."""
    settings = args.settings
    if args.demo:
        from tui import demo

        settings = demo.prepare(check=check)
    # The demo is its own project: the .env of the folder it is started from is not its.
    load_env = not (args.no_env_file or args.demo)
    project = discover(settings, args.pythonpath, Path.cwd(), args.env_file, load_env)
    return project, entries(project, args.names)


async def serve(
    command: str, args: argparse.Namespace, engine: LocalEngine, where: place.Place
) -> int:
    """The engine on its control socket: behind a console (``engine``), or printing its
    output (``--headless``)."""
    try:
        listener = place.listen(where)
    except place.PlaceError as e:
        print(f"prodserver-tui: {e}", file=sys.stderr)
        return 1
    if command == "engine":
        owner = None
        if args.owner_fd is not None:
            owner = socket.socket(fileno=args.owner_fd)
        _log_to(where.state / "engine.log")
        return await host.run(engine, where, listener, owner)
    from tui import headless

    async with host.Host(engine, where, detached=True).serving(listener) as served:
        return await headless.run(
            engine, sys.stdout.buffer, sys.stdout.isatty(), args.ring_lines, served
        )


def _place_of(account: str, args: argparse.Namespace, settings_module: str) -> place.Place:
    """The place an engine run as ``account`` by systemd takes: its home, no runtime folder
    (a system service has none), as ``sudo -u ACCOUNT prodserver-tui attach`` finds it."""
    import pwd

    try:
        home = pwd.getpwnam(account).pw_dir
    except KeyError:
        raise place.PlaceError(f"no account named {account!r}: check --user") from None
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME")}
    os.environ["HOME"] = home
    os.environ.pop("XDG_RUNTIME_DIR", None)
    os.environ.pop("XDG_STATE_HOME", None)
    try:
        return locate(args, settings_module)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _log_to(path: Path) -> None:
    """From now on this engine writes only to its log file: the terminal it was started
    from (a console's, ``up``'s pipe) is no longer its to write to."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def unit(
    args: argparse.Namespace,
    project: Project,
    found: list[Entry],
    where: place.Place,
    redact: Redactor,
) -> int:
    """A systemd unit running this project's engine headless: its journal gets the output."""
    graces = []
    for entry in found:
        with contextlib.suppress(ConfigError):
            graces.append(entry.launch().grace)
    exec_start = [*systemd.program(), "--headless", "--settings", project.settings_module]
    for folder in args.pythonpath:
        exec_start += ["--pythonpath", str(Path(folder).resolve())]
    for file in args.env_file:
        exec_start += ["--env-file", str(Path(file).resolve())]
    if args.no_env_file:
        exec_start.append("--no-env-file")
    if args.demo:
        exec_start.append("--demo")
    if args.names:
        exec_start += ["run", *args.names] if set(args.names) & COMMANDS else args.names
    try:
        if args.user:  # its socket is where that account's engine and `attach` find it
            where = _place_of(args.user, args, project.settings_module)
        text = systemd.unit(
            name=f"prodserver-tui-{where.key}",
            description=f"prodserver-tui: {project.settings_module} in {project.base_dir}",
            exec_start=exec_start,
            working_directory=Path(project.base_dir),
            stop_timeout=systemd.stop_timeout(graces),
            socket=where.socket,
            log_folder=where.state,
            user=args.user,
        )
    except (systemd.UnitError, place.PlaceError) as e:
        print(f"prodserver-tui: error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


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
