"""The root `spotplan` Typer app: global options and the registration of every command group.

Command modules import only typer and the standard library at module level, so `spotplan --help`
stays fast and never imports pandas or a cloud SDK.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
import typer.rich_utils

from spotplan import __version__
from spotplan.cli import analyze, backtest, migrate, prices, watch
from spotplan.cli.common import State


def _one_line_usage_error(self: Exception) -> None:
    """Usage errors as one line on stderr (exit code 2 stays Click's), not a boxed panel."""
    if type(self).__name__ == "NoArgsIsHelpError":
        return
    ctx = getattr(self, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(str(self.format_message()).split())  # type: ignore[attr-defined]
    sys.stderr.write(f"error: {message}{where}\n")


typer.rich_utils.rich_format_error = _one_line_usage_error  # type: ignore[assignment]

# NO_COLOR means no escape codes in help either: rich's no_color alone still writes bold and dim,
# which the renderings (report._console) already drop; no colour system drops them all.
if os.environ.get("NO_COLOR"):
    typer.rich_utils.COLOR_SYSTEM = None


# Help shows value types the way Click does (PATH, TEXT, FLOAT, a|b), and nothing after an on/off
# flag, which takes no value: Typer 0.29 writes `<list[Path]>`, `<str>`, and `<bool>` after every flag.
_CLICK_TYPES = {"str": "TEXT", "float": "FLOAT", "int": "INTEGER", "Path": "PATH", "path": "PATH", "file": "FILE",
                "directory": "DIR", "bool": "BOOLEAN", "int range": "INTEGER", "float range": "FLOAT"}


def _install_click_style_types() -> None:
    import re

    import typer.core as core

    base = getattr(core, "_TyperParameter", None)
    option = getattr(core, "TyperOption", None)
    if base is None or option is None or not hasattr(base, "display_type"):
        return  # another Typer: its own help stands
    original = base.display_type

    def display_type(self: object, ctx: object) -> str:
        shown = str(original(self, ctx))
        inner = re.sub(r"^list\[(.*)\]$", r"\1", shown.strip("<>"))
        return _CLICK_TYPES.get(inner, inner)

    original_rich = option.display_type_rich

    def display_type_rich(self: object, ctx: object) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original_rich(self, ctx)  # type: ignore[no-any-return]

    base.display_type = display_type
    option.display_type_rich = display_type_rich


_install_click_style_types()

app = typer.Typer(
    name="spotplan",
    help=(
        "Cut GPU bills by moving the right workloads onto spot/preemptible capacity on AWS, GCP "
        "and Azure, and move them safely.\n\n"
        "Start with: spotplan analyze examples/fleet.yaml"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spotplan {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs and full tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """spotplan: plan, price and execute moves to spot capacity."""
    State.verbose = verbose


app.command("analyze", no_args_is_help=True)(analyze.analyze)
app.add_typer(prices.app, name="prices")
app.command("migrate")(migrate.migrate)
app.add_typer(migrate.migrations_app, name="migrations")
app.command("permissions")(migrate.permissions)
app.command("watch")(watch.watch)
app.command("backtest")(backtest.backtest)


def run() -> None:
    app(prog_name="spotplan")
