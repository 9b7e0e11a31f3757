"""Modal dialogs: help, scaling every knob of a process, and yes / no confirmation."""

from __future__ import annotations

from itertools import zip_longest
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from backends.diagnostics import Finding
from tui.engine.views import KnobView
from tui.widgets.pane import finding_text


class Dialog(ModalScreen[object]):
    DEFAULT_CSS = """
    /* Opaque: a see-through modal makes every redraw below blend the whole screen. */
    Dialog { align: center middle; background: $background; }
    Dialog > Vertical {
        width: auto; min-width: 50; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    Dialog Input { width: 30; }
    Dialog .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]


class HelpScreen(Dialog):
    """Every key, from the app's own bindings, so the help never drifts from the truth."""

    DEFAULT_CSS = "HelpScreen > Vertical { width: 78; }"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "dismiss(None)", "Close"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        # Two pairs of columns: every key fits on an 80x24 terminal.
        table = Table.grid(padding=(0, 1))
        for _ in range(2):
            table.add_column(style="bold cyan", no_wrap=True, justify="right")
            table.add_column(no_wrap=True)
        half = (len(self.keys) + 1) // 2
        for left, right in zip_longest(self.keys[:half], self.keys[half:], fillvalue=("", "")):
            table.add_row(left[0], left[1] + "  ", right[0], right[1])
        with Vertical():
            yield Label(Text("prodserver-tui keys", style="bold"))
            yield Static(table)
            yield Label("Mouse: click a pane or a row to pick it.", classes="hint")
            yield Label(
                "↑ ↓ PgUp PgDn Home, Shift+← →: scroll the log. Esc closes.", classes="hint"
            )


class ScaleScreen(Dialog):
    """Every knob of one process; Enter applies what changed. Returns {knob: value}."""

    def __init__(self, name: str, knobs: tuple[KnobView, ...]) -> None:
        super().__init__()
        self.process = name
        self.knobs = knobs

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Scale {self.process}", style="bold"))
            for knob in self.knobs:
                how = "live" if knob.live else "by a graceful restart"
                yield Label(
                    f"{knob.name} (now {knob.desired}, configured {knob.configured}, changes {how})"
                )
                yield Input(str(knob.desired), id=f"knob-{knob.name}", type="integer")
            yield Label("Enter applies, Esc cancels.", classes="hint")

    def on_input_submitted(self) -> None:
        wanted = {}
        for knob in self.knobs:
            value = self.query_one(f"#knob-{knob.name}", Input).value.strip()
            if value and value != str(knob.desired):
                wanted[knob.name] = value
        self.dismiss(wanted)


class FindingsScreen(Dialog):
    """Diagnostics in a dialog (``check --deploy``): one per line, or a line saying none."""

    DEFAULT_CSS = "FindingsScreen VerticalScroll { height: auto; max-height: 30; }"

    def __init__(self, title: str, findings: list[Finding]) -> None:
        super().__init__()
        self.heading = title
        self.findings = findings

    def compose(self) -> ComposeResult:
        count = len(self.findings)
        with Vertical():
            yield Label(Text(f"{self.heading}: {count or 'no'} finding(s)", style="bold"))
            with VerticalScroll():
                for finding in self.findings:
                    code = Text(f"[{finding.code}] ", style="dim")
                    yield Static(Text.assemble(code, finding_text(finding)), markup=False)
            yield Label("Esc closes.", classes="hint")


class ConfirmScreen(Dialog):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "dismiss(True)", "Yes"),
        Binding("n", "dismiss(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)  # it names the process
            yield Label("y / Enter: yes    n / Esc: no", classes="hint")
