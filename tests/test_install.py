"""The README's install lines, done for real: a wheel and an sdist built from the checkout, the
wheel installed into a fresh virtualenv and run with no source tree around, and the checkout
itself installed as the README says. The name is not on PyPI, so a line that installs it by
name would fail for every new user.

Offline by construction: the builds run without isolation (hatchling from this venv, never
downloaded), pip gets no index and no config, and a fresh venv sees the dependencies already
installed here (Django, Textual, gunicorn...) through a folder of links to this venv's
site-packages, with this project's own files (its editable finder, its ``tui`` and
``backends``, its metadata) left out: whatever ``tui`` the fresh venv imports must be the one
pip installed there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import site
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import Drained, free_port
from needs import needs

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PACKAGES = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

pytestmark = needs(
    "build and hatchling",
    lambda: (
        None
        if importlib.util.find_spec("build") and importlib.util.find_spec("hatchling")
        else 'not installed: pip install -e ".[test]"'
    ),
)


class Dist(NamedTuple):
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``python -m build`` as a user runs it: the sdist, then the wheel built from the sdist
    (so the sdist alone must be enough). No isolation: an isolated build downloads hatchling."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)])
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to everything in this venv's site-packages but this project: a fresh venv adds the
    folder to its path (a plain line in a .pth: the .pth files inside it are not run, so no
    editable finder either)."""
    farm = tmp_path_factory.mktemp("deps")
    for folder in site.getsitepackages():
        for item in Path(folder).iterdir():
            # Its metadata, its editable finder (a module or a .pth), its packages.
            ours = "prodserver_tui" in item.name.replace("-", "_") or item.name in PACKAGES
            if ours or item.suffix == ".pth":
                continue
            if not (farm / item.name).exists():
                (farm / item.name).symlink_to(item)
    assert not [p for p in farm.iterdir() if p.name in PACKAGES]
    return farm


def test_wheel_and_sdist_hold_every_file_the_program_runs_with(dist: Dist) -> None:
    """The wheel: every file of the packages (the stylesheet, the demo project and its
    management command, the migrations), the command, the version; nothing else. The sdist:
    what rebuilds it, with the tests and docs, and no caches or venvs."""
    packaged = {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"tui/app.tcss", "tui/demo/management/commands/demo_load.py"} <= packaged
    assert [p for p in packaged if p.startswith("backends/taskworker/migrations/0")]
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        info = f"prodserver_tui-{VERSION}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert packaged - names == set(), "missing from the wheel"
    assert {n for n in names if not n.startswith(info)} - packaged == set(), "stray files"
    assert "prodserver-tui = tui.cli:main" in entry_points
    assert f"\nVersion: {VERSION}\n" in metadata
    with tarfile.open(dist.sdist) as sdist:
        top = f"prodserver_tui-{VERSION}/"
        files = {m.name.removeprefix(top) for m in sdist.getmembers() if m.isfile()}
    assert {"pyproject.toml", "README.md", "tests/test_install.py", "docs/reliability.md"} <= files
    assert packaged <= files
    assert not [f for f in files if "__pycache__" in f or f.startswith(".venv")]


def test_the_wheel_runs_in_a_fresh_venv_with_no_source_tree(
    dist: Dist, deps: Path, tmp_path: Path
) -> None:
    """Installed by the README's wheel line, from a folder that is not the checkout: the
    command, ``--version`` from the metadata, ``--demo --check``, and the demo for real (its
    migrations, its web server answering, a task run), all from the venv's site-packages."""
    wheels = {spec for spec in readme_specs() if spec.split("[")[0].endswith(".whl")}
    assert len(wheels) == 1, f"README.md should show one wheel install line, not {wheels}"
    (line,) = wheels
    assert line.split("[")[0] == dist.wheel.name, "the README names another wheel"
    python = fresh_venv(tmp_path / "venv", deps)
    pip_install(python, str(dist.wheel.parent / line))
    away = tmp_path / "elsewhere"
    away.mkdir()
    paths = json.loads(run([str(python), "-c", IMPORTED], cwd=away).stdout)
    assert Path(paths["tui"]).is_relative_to(paths["purelib"]), paths
    assert Path(paths["backends"]).is_relative_to(paths["purelib"]), paths
    assert str(REPO) not in paths["path"], paths

    command = str(python.parent / "prodserver-tui")
    assert run([command, "--version"], cwd=away).stdout == f"prodserver-tui {VERSION}\n"
    port = free_port()
    demo = {
        "PRODSERVER_TUI_DEMO_DIR": str(tmp_path / "demo"),
        "PRODSERVER_TUI_DEMO_PORT": str(port),
    }
    check = run([command, "--demo", "--check"], cwd=away, **demo).stdout
    assert f"web     gunicorn  {python} -m gunicorn --bind=127.0.0.1:{port}" in check, check
    assert not [row for row in check.splitlines() if row.startswith(("error", "warn"))]

    console = Drained([command, "--demo", "--headless", "web", "worker"], away, clean_env(**demo))
    try:
        console.wait_for("web    | -- ready in", timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/enqueue/", timeout=5) as answer:
            assert answer.status == 200
        console.wait_for("tui.demo.tasks.fast", timeout=30)
        console.proc.send_signal(signal.SIGTERM)
        assert console.proc.wait(timeout=45) == 0, "\n".join(console.lines)
    finally:
        console.kill()


def test_readme_installs_from_a_checkout_never_by_the_unpublished_name(
    deps: Path, tmp_path: Path
) -> None:
    """Every ``pip install "..."`` of this project in README.md and docs/*.md names the checkout
    or a wheel: the bare name finds no distribution. The checkout line, installed as written
    (its folder, then an extra), gives a working command that runs the installed copy."""
    ours = [s for s in readme_specs() if re.search(r"prodserver[-_]tui|^\.(\[|$)", s)]
    by_name = [s for s in ours if re.fullmatch(r"prodserver[-_]tui(\[[\w,]+\])?", s)]
    assert by_name == [], "the name is not on PyPI: install from a checkout or a wheel"
    folders = {s.split("[")[0] for s in ours if not s.split("[")[0].endswith(".whl")}
    assert folders == {".", "/path/to/prodserver-tui"}  # "Try it" in the checkout; elsewhere
    line = "/path/to/prodserver-tui[gunicorn]"
    assert line in ours
    python = fresh_venv(tmp_path / "venv", deps)
    pip_install(python, line.replace("/path/to/prodserver-tui", str(REPO)))
    paths = json.loads(run([str(python), "-c", IMPORTED], cwd=tmp_path).stdout)
    assert Path(paths["tui"]).is_relative_to(paths["purelib"]), paths
    version = run([str(python.parent / "prodserver-tui"), "--version"], cwd=tmp_path).stdout
    assert version == f"prodserver-tui {VERSION}\n"


def test_version_from_a_checkout_that_is_not_installed(deps: Path, tmp_path: Path) -> None:
    """``python -m tui.cli`` from a checkout has no metadata to ask: pyproject.toml says the
    version, marked as a checkout (before: "unknown")."""
    python = fresh_venv(tmp_path / "venv", deps)
    done = run([str(python), "-m", "tui.cli", "--version"], cwd=tmp_path, PYTHONPATH=str(REPO))
    assert done.stdout == f"prodserver-tui {VERSION} (a checkout, not installed)\n"


# Where the fresh interpreter finds the packages, and what its path holds.
IMPORTED = """
import json, sys, sysconfig, tui, backends
print(json.dumps({"tui": tui.__file__, "backends": backends.__file__,
                  "purelib": sysconfig.get_path("purelib"), "path": sys.path}))
"""


def readme_specs() -> list[str]:
    """The quoted requirement of every ``pip install`` line in the user's documents."""
    found = []
    for doc in DOCS:
        found += re.findall(r'pip install (?:-\S+ )*"([^"]+)"', doc.read_text())
    return found


def fresh_venv(folder: Path, deps: Path) -> Path:
    """A venv whose path ends with ``deps`` (pip included: no copy of its own to make)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(folder)])
    python = folder / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    (Path(purelib.stdout.strip()) / "deps.pth").write_text(f"{deps}\n")
    return python


def pip_install(python: Path, spec: str) -> None:
    """The venv's pip (this venv's, through ``deps``), offline and with nothing but what it is
    given: no index, no config file, no PIP_* from the environment (this machine's
    find-links), the dependencies already in place."""
    offline = ["--no-deps", "--no-index", "--no-build-isolation"]
    run([str(python), "-m", "pip", "install", "-q", *offline, spec], PIP_CONFIG_FILE=os.devnull)


def run(argv: list[str], cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """Nothing that points back at the checkout or this venv."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
    kept = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PIP_")}
    return {**kept, **extra}
