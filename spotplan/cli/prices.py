"""`spotplan prices ...`: the command group; `show` lives here, pull/import/history/alerts in
`prices_live`."""

from __future__ import annotations

import typer

from spotplan.cli.common import VerboseOpt, group_verbose

app = typer.Typer(
    help="Show, pull, import and chart spot and on-demand prices and interruption risk.",
    no_args_is_help=True,
)


@app.callback()
def _group(verbose: VerboseOpt = False) -> None:
    # `spotplan prices -v show` works like `spotplan -v prices show` and `... show -v`.
    group_verbose(verbose)

# Registers `show` (issue: analyze) and pull/import/history/alerts (issue: prices).
from spotplan.cli import prices_show  # noqa: E402,F401,I001  (show first in --help)
from spotplan.cli import prices_live  # noqa: E402,F401
