"""`spotplan prices show`: spot and on-demand prices side by side, from the prices analyze uses (the
bundled snapshot plus the local store, or `--prices` files), as a table, CSV, markdown or JSON
(schema `spotplan.prices/1`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from spotplan.cli.common import (
    OutPathOpt,
    OutputFormat,
    OutputOpt,
    VerboseOpt,
    emit,
    handle_errors,
    rendering,
)
from spotplan.cli.prices import app

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "spotplan.prices/1"
_NOTE = (
    "USD per instance-hour, Linux. Savings = 1 - spot/on-demand. Band = share of spot capacity "
    "reclaimed per month (AWS Spot Advisor); empty where the provider publishes none."
)


@app.command("show")
def show(
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu", metavar="MODEL", help="GPU model: H100, A100-80GB, L4, ... or a provider's spelling."
        ),
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", metavar="P", help="aws, gcp or azure.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", metavar="R", help="Region, e.g. us-east-1.")
    ] = None,
    market: Annotated[
        str | None,
        typer.Option(
            "--market", metavar="MARKET", help="Only pools with a price on this market: spot or on-demand."
        ),
    ] = None,
    prices: Annotated[
        list[Path] | None,
        typer.Option(
            "--prices",
            metavar="PATH",
            help="Price-table CSV/parquet file or folder (repeatable); replaces the bundled snapshot "
            "and the local store.",
        ),
    ] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show spot and on-demand prices and interruption bands side by side, one row per pool.

    No matching pool is not an error: a message goes to stderr, the rendering is empty, exit 0.

    Example: spotplan prices show --gpu H100 --market spot -o markdown
    """
    with handle_errors(verbose):
        from spotplan.analysis import load_prices
        from spotplan.pricing.compare import compare, parse_market, parse_provider
        from spotplan.pricing.snapshot import snapshot_as_of, snapshot_sources

        # Validate the flags before reading any file, so a typo fails fast with exit 2.
        parse_provider(provider)
        parse_market(market)
        # The loader analyze uses, so both see the same prices (snapshot + local store, or --prices).
        loaded = load_prices(prices)
        table = loaded.table
        rows = compare(table, gpu=gpu, provider=provider, region=region, market=market)
        shown = table[table["provider"].isin(set(rows["provider"]))]
        origin = loaded.source
        meta = {"origin": origin, "as_of": snapshot_as_of(shown), "sources": snapshot_sources(shown)}
        if rows.empty:
            sys.stderr.write(f"no prices match {_describe(gpu, provider, region, market)} in {origin}"
                             f"{_unknown_gpu_note(gpu)}\n")
        view = rendering(output, out)
        renderers: dict[OutputFormat, Callable[[pd.DataFrame, dict[str, Any]], str]] = {
            OutputFormat.table: partial(_render_table, terminal=view.terminal, color=view.color),
            OutputFormat.csv: _render_csv,
            OutputFormat.markdown: _render_markdown,
            OutputFormat.json: _render_json,
        }
        text = renderers[view.format](rows, meta)
        if text or out is not None:
            emit(text, out)


def _describe(gpu: str | None, provider: str | None, region: str | None, market: str | None) -> str:
    given = [f"--{k} {v}" for k, v in (("gpu", gpu), ("provider", provider), ("region", region),
                                         ("market", market)) if v is not None]
    return " ".join(given) if given else "anything"


def _footnote(meta: dict[str, Any]) -> str:
    parts = [
        f"{p}: {', '.join(meta['sources'].get(p, [])) or 'unknown source'}, as of {meta['as_of'].get(p, '?')}"
        for p in sorted(meta["sources"])
    ]
    lead = f"Prices from the {meta['origin']}" if meta["origin"].startswith("bundled snapshot") else (
        f"Prices from {meta['origin']}"
    )
    return f"{lead}: {'; '.join(parts)}." if parts else f"{lead}."


def _price(value: float | None) -> str:
    from spotplan.report._format import fixed

    return "" if value is None else fixed(value, 4)


def _pct(value: float | None) -> str:
    from spotplan.report._format import fixed

    return "" if value is None else f"{fixed(value, 1)}%"


def _count(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _human_cells(rows: pd.DataFrame, with_zone: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["Provider", "Region", *(["Zone"] if with_zone else []), "Instance type", "GPU", "GPUs",
               "vCPUs", "Memory GiB", "On-demand $/h", "Spot $/h", "Savings", "Band", "As of"]
    from spotplan.pricing.compare import records

    body = []
    for r in records(rows):
        body.append([
            r["provider"], r["region"], *([r["zone"] or ""] if with_zone else []), r["instance_type"],
            r["gpu_model"] or "", _count(r["gpu_count"]), _count(r["vcpus"]), _count(r["memory_gib"]),
            _price(r["on_demand_per_hour"]), _price(r["spot_per_hour"]), _pct(r["savings_pct"]),
            r["interruption_band"] or "", r["observed_at"] or "",
        ])
    return headers, body


def _render_table(rows: pd.DataFrame, meta: dict[str, Any], *, terminal: bool, color: bool) -> str:
    from rich.measure import Measurement

    if rows.empty:
        return ""
    with_zone = bool((rows["zone"] != "").any())
    headers, body = _human_cells(rows, with_zone)
    from spotplan.report._console import capture_console

    console = capture_console(color=color)
    table = _rich_table(headers, body, len(rows), meta)
    needed = Measurement.get(console, console.options.update(width=1000), table).maximum
    if not terminal:
        # A file, a pipe or a capture: print the whole table rather than squeezing it into 80 columns.
        console = capture_console(width=max(80, needed))
    elif needed > console.width:
        # A narrow terminal: drop the columns that matter least before rich starts truncating.
        keep = [i for i, h in enumerate(headers) if h not in _OPTIONAL]
        table = _rich_table([headers[i] for i in keep], [[c[i] for i in keep] for c in body], len(rows), meta)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


_NUMERIC = {"GPUs", "vCPUs", "Memory GiB", "On-demand $/h", "Spot $/h", "Savings"}
_OPTIONAL = {"vCPUs", "Memory GiB", "As of", "Zone"}


def _rich_table(headers: list[str], body: list[list[str]], n: int, meta: dict[str, Any]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Spot and on-demand prices ({n} pools)",
        caption=f"{_footnote(meta)}\n{_NOTE}",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for h in headers:
        numeric = h in _NUMERIC
        table.add_column(h, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    for cells in body:
        table.add_row(*cells)
    return table


def _render_markdown(rows: pd.DataFrame, meta: dict[str, Any]) -> str:
    lines = ["# Spot and on-demand prices", ""]
    if rows.empty:
        lines += ["No pool matches the filters.", ""]
    else:
        with_zone = bool((rows["zone"] != "").any())
        headers, body = _human_cells(rows, with_zone)
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---:" if h in _NUMERIC else "---" for h in headers) + "|")
        for cells in body:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    lines += [f"{_footnote(meta)} {_NOTE}", ""]
    return "\n".join(lines)


def _render_csv(rows: pd.DataFrame, meta: dict[str, Any]) -> str:
    import csv
    import io

    from spotplan.pricing.compare import COMPARE_COLUMNS, records

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COMPARE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for rec in records(rows):
        if rec["savings_pct"] is not None:
            rec["savings_pct"] = round(rec["savings_pct"], 2)
        if rec["memory_gib"] is not None and float(rec["memory_gib"]).is_integer():
            rec["memory_gib"] = int(rec["memory_gib"])
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def _render_json(rows: pd.DataFrame, meta: dict[str, Any]) -> str:
    import json

    from spotplan.pricing.compare import records

    doc = {
        "schema": SCHEMA,
        "prices": {"source": meta["origin"], "as_of": meta["as_of"], "sources": meta["sources"]},
        "rows": records(rows),
    }
    return json.dumps(doc, indent=2)


def _unknown_gpu_note(gpu: str | None) -> str:
    """Why nothing matched, when --gpu names no model spotplan knows (a typo such as H1000)."""
    from spotplan.errors import InputError
    from spotplan.pricing.sources import check_gpu

    try:
        check_gpu(gpu)
    except InputError as exc:
        return f": {exc}"
    return ""
