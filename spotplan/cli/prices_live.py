"""`spotplan prices pull|import|history|alerts`: live pulls into the local store, imports of public
formats, history charts and the spot-near-on-demand alert. Parses options, calls
`spotplan.pricing.{sources,store,importers,history,charts,alerts}`, renders."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from spotplan.cli.common import (
    OutPathOpt,
    OutputFormat,
    OutputOpt,
    Rendering,
    VerboseOpt,
    emit,
    handle_errors,
    rendering,
    stderr_console,
)
from spotplan.cli.prices import app
from spotplan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


class PullProvider(str, Enum):
    aws = "aws"
    gcp = "gcp"
    azure = "azure"
    all = "all"


class ImportFormat(str, Enum):
    auto = "auto"
    aws_spot_history = "aws-spot-history"
    ec2instances = "ec2instances"
    spot_advisor = "spot-advisor"
    skypilot = "skypilot"
    azure_retail = "azure-retail"
    gcp_pricing = "gcp-pricing"
    price_table = "price-table"


NowOpt = Annotated[
    str | None,
    typer.Option("--now", metavar="ISO8601", help="Treat this instant as now (reproducible reports)."),
]


def _render(df: pd.DataFrame, shown: Rendering, *, title: str, meta: dict[str, Any], floats: int = 4) -> str:
    """Small tables of these commands: rich table, CSV, markdown or JSON (`rows` + `meta`)."""
    output = shown.format
    if output == OutputFormat.json:
        records = json.loads(df.to_json(orient="records"))
        return json.dumps({**meta, "rows": records}, indent=2)
    if output == OutputFormat.csv:
        return str(df.to_csv(index=False, float_format=f"%.{floats}f"))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.{floats}f}"
        return str(v)

    if output == OutputFormat.markdown:
        head = "| " + " | ".join(df.columns) + " |"
        sep = "|" + "|".join("---" for _ in df.columns) + "|"
        body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
        return "\n".join([f"**{title}**", "", head, sep, *body])
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in df.columns:
        numeric = str(df[col].dtype).startswith(("float", "int"))
        table.add_column(col, justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(cell(v) for v in row))
    from spotplan.report._console import capture_console

    console = capture_console(width=200, color=shown.color)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


class _Bars:
    """Rich progress bars on stderr, one per provider/region, fed by the sources' callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pages"), console=stderr_console(), transient=False,
        )
        self.tasks: dict[str, Any] = {}
        import threading

        self.lock = threading.Lock()
        self.started = False

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, key: str, advance: int, total: int | None) -> None:
        with self.lock:
            if not self.started:  # started on the first report, so an early failure prints one line only
                self.progress.start()
                self.started = True
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(key, total=None)
            task = self.tasks[key]
            if advance:
                self.progress.advance(task, advance)
            if advance == 0 or total is not None:
                done = next(t.completed for t in self.progress.tasks if t.id == task)
                self.progress.update(task, total=max(done, 1), completed=max(done, 1))


@app.command("pull")
def pull(
    provider: Annotated[
        PullProvider, typer.Option("--provider", help="aws, gcp, azure or all.", case_sensitive=False)
    ],
    region: Annotated[
        list[str] | None, typer.Option("--region", metavar="R", help="Region (repeatable); default: all.")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Spot history to fetch, in days.")] = 90,
    gpu: Annotated[
        str | None, typer.Option("--gpu", metavar="MODEL",
                                  help="Only this GPU model, e.g. A100-80GB; a bare family (A100) takes every variant.")
    ] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Pull live spot/on-demand prices and bands into the local store (credentials needed).

    Concurrent across regions, retried with backoff when throttled; a failure leaves the store as it
    was. A second pull adds only new observations.

    Example: spotplan prices pull --provider aws --region us-east-1 --days 30 --gpu H100
    """
    with handle_errors(verbose):
        from spotplan.paths import price_store_dir
        from spotplan.pricing import store
        from spotplan.pricing.sources import PullRequest, pull_all

        providers = ["aws", "gcp", "azure"] if provider == PullProvider.all else [provider.value]
        # Every source filters with `spotplan.gpus.gpu_matches`, so a bare family ("A100") takes all
        # its variants there, like `prices show --gpu`.
        req = PullRequest(regions=list(region or []), days=days, gpu=gpu)
        with _Bars() as bars:
            rows = pull_all(providers, req, bars)
        for note in req.notes:
            sys.stderr.write(f"note: {note}\n")
        result = store.merge_into_store(rows, quotes=True, aws_zone_names=req.zone_names)
        _conflict_notes(result)
        as_of = store.store_as_of()
        import pandas as pd

        pulled = rows.groupby("provider").size() if not rows.empty else pd.Series(dtype=int)
        summary = pd.DataFrame([
            {"provider": p, "pulled": int(pulled.get(p, 0)), "new": result.added.get(p, 0),
             "stored": result.total.get(p, 0), "newest": as_of.get(p, "")}
            for p in providers
        ])
        emit(_render(summary, rendering(output, out), title=f"price store: {price_store_dir()}",
                     meta={"schema": "spotplan.pull/1", "store": str(price_store_dir())}), out)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="File to import (JSON, CSV, TSV, parquet, .gz).",
                                         dir_okay=False)],
    fmt: Annotated[
        ImportFormat, typer.Option("--format", help="Format; auto detects it from the content.", case_sensitive=False)
    ] = ImportFormat.auto,
    observed_at: Annotated[
        str | None,
        typer.Option("--observed-at", metavar="ISO8601",
                     help="When the data was published, for formats that carry no date (ec2instances, "
                          "spot-advisor, skypilot): ISO-8601 date or time. Default: the file's "
                          "modification time, with a note on stderr."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and report; do not touch the store.")] = False,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Import a public price file into the local store, auto-detecting its format.

    Formats: aws ec2 describe-spot-price-history JSON (or the TSV capture), ec2instances.info JSON,
    the AWS spot advisor JSON, SkyPilot vms.csv, Azure retail prices JSON, Cyclenerd GCP CSVs, the
    price table itself.

    Example: spotplan prices import spot-advisor-data.json
    """
    with handle_errors(verbose):
        import pandas as pd

        from spotplan.pricing import store
        from spotplan.pricing.importers import import_file, parse_observed_at

        if observed_at:
            parse_observed_at(observed_at)  # a typo fails with exit 2 before any file is read
        result = import_file(file, fmt.value, observed_at=observed_at)
        for note in result.notes:
            sys.stderr.write(f"note: {note}\n")
        rows = result.rows
        merged = None if dry_run else store.merge_into_store(rows)
        if merged is not None:
            _conflict_notes(merged)
        providers = sorted(set(rows["provider"].unique()) | set(result.skipped))
        shown = rendering(output, out)
        summary = pd.DataFrame([
            {"provider": p, "rows": int((rows["provider"] == p).sum()),
             "spot": int(((rows["provider"] == p) & (rows["market"] == "spot")).sum()),
             "on_demand": int(((rows["provider"] == p) & (rows["market"] == "on-demand")).sum()),
             "gpu_models": _model_list(rows.loc[rows["provider"] == p, "gpu_model"],
                                       full=shown.format in (OutputFormat.json, OutputFormat.csv)),
             "new": "dry run" if merged is None else merged.added.get(p, 0),
             "skipped": result.skipped_total(p)}
            for p in providers
        ])
        emit(_render(summary, shown, title=f"{file} ({result.format})",
                     meta={"schema": "spotplan.import/1", "file": str(file), "format": result.format,
                           "dry_run": dry_run, "skipped": result.skipped}), out)


def _model_list(models: pd.Series, *, full: bool) -> str:
    """The GPU models of an import: all of them for machines (JSON, CSV), the first eight and a
    count of the rest for a table a person reads."""
    names = sorted({str(g) for g in models if g})
    if full or len(names) <= 8:
        return ", ".join(names)
    return ", ".join(names[:8]) + f", ... (+{len(names) - 8} more)"


def _conflict_notes(result: Any) -> None:
    for provider, n in sorted(result.conflicts.items()):
        if n:
            sys.stderr.write(f"note: {provider}: {n} observation(s) came with another price for the same pool and "
                             "time than the store or an earlier row held; the one read last was kept\n")


@app.command("history")
def history(
    instance_type: Annotated[str, typer.Argument(metavar="INSTANCE_TYPE", help="e.g. p4d.24xlarge")],
    provider: Annotated[str, typer.Option("--provider", metavar="P", help="aws, gcp or azure.")],
    region: Annotated[str, typer.Option("--region", metavar="R", help="Region, e.g. us-east-1.")],
    # max: a window pandas and datetime can hold (--days inf or 1e6 would crash the chart, exit 1).
    days: Annotated[float, typer.Option("--days", min=0.01, max=36500, help="Window to chart, in days.")] = 90,
    png: Annotated[
        Path | None, typer.Option("--png", metavar="PATH", help="Also write a PNG chart here.", dir_okay=False)
    ] = None,
    now: NowOpt = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Chart one instance type's spot (per zone) and on-demand prices from the local store, with the
    time-weighted mean, p95 and number of price changes.

    Example: spotplan prices history p3.2xlarge --provider aws --region us-east-1 --days 30 --png p3.png
    """
    with handle_errors(verbose):
        import pandas as pd

        from spotplan.pricing.charts import terminal_chart, write_png
        from spotplan.pricing.compare import parse_provider
        from spotplan.pricing.history import history_stats, select_history
        from spotplan.pricing.snapshot import load_snapshot
        from spotplan.pricing.store import read_store
        from spotplan.times import as_utc, iso_z, parse_now

        provider = parse_provider(provider)
        if png is not None and png.suffix.lower() != ".png":
            # The chart is PNG bytes; under another name it would be a file that lies about itself.
            raise InputError(f"--png {png}: the chart is written as PNG; give a path ending in .png")
        t_now = as_utc(parse_now(now or None))
        stored = read_store()
        rows = select_history(stored, provider, region, instance_type, days, t_now) if stored is not None else None
        # The bundled snapshot is read only when the store alone cannot draw the chart.
        if rows is None or not (rows["market"] == "spot").any():
            snap = load_snapshot()
            table = snap if stored is None else pd.concat([snap, stored], ignore_index=True)
            rows = select_history(table, provider, region, instance_type, days, t_now)
        elif not (rows["market"] == "on-demand").any():
            # Pulled spot history but no on-demand price: the snapshot's is the reference line. (Its
            # spot quotes stay out: a year-old quote would read as the price of the whole window.)
            snap = load_snapshot()
            od = select_history(snap[snap["market"] == "on-demand"], provider, region, instance_type, days, t_now)
            rows = pd.concat([rows, od], ignore_index=True).sort_values("_t", kind="stable")
        if rows.empty:
            raise InputError(
                f"no price history for {instance_type} in {provider} {region} in the last {days:g} days",
                hint=f"run `spotplan prices pull --provider {provider} --region {region}` or `spotplan prices import`",
            )
        window_h = days * 24
        stats = history_stats(rows.drop(columns="_t"), window_h, t_now)
        start = t_now - pd.Timedelta(days=days).to_pytimedelta()
        title = f"{instance_type} {provider} {region}: spot vs on-demand, last {days:g} days"
        if png is not None:
            write_png(rows, stats, png, title=title, start=start, now=t_now)
            sys.stderr.write(f"wrote {png}\n")
        if rendering(output, out).format == OutputFormat.table:
            emit(terminal_chart(rows, stats, title=title, start=start, now=t_now), out)
            return
        cols = ["zone", "market", "price", "price_p95", "latest_price", "changes", "observations", "as_of"]
        view = stats[cols].rename(columns={"price": "mean"})
        emit(_render(view, rendering(output, out), title=title,
                     meta={"schema": "spotplan.history/1", "instance_type": instance_type, "provider": provider,
                           "region": region, "days": days, "now": iso_z(t_now)}), out)


@app.command("alerts")
def alerts(
    ratio: Annotated[float, typer.Option("--ratio", help="Alert when spot > ratio × on-demand.")] = 0.8,
    provider: Annotated[str | None, typer.Option("--provider", metavar="P", help="Only aws, gcp or azure.")] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", metavar="URL", help="POST a Slack-compatible JSON message here.")
    ] = None,
    output: OutputOpt = None,
    out: OutPathOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List spot pools whose current price exceeds ratio × on-demand (latest observation of each
    pool, from the local store over the bundled snapshot).

    Example: spotplan prices alerts --ratio 0.7 --webhook https://hooks.slack.com/services/...
    """
    with handle_errors(verbose):
        from spotplan.analysis import load_prices
        from spotplan.pricing.alerts import check_ratio, find_alerts, post_webhook, slack_payload
        from spotplan.pricing.compare import filter_table, parse_provider
        from spotplan.webhook import check_webhook_url

        check_ratio(ratio)
        if webhook is not None:
            check_webhook_url(webhook)
        # The prices analyze and `prices show` use: the bundled snapshot plus the local store.
        table = filter_table(load_prices(None).table, provider=parse_provider(provider))
        hits = find_alerts(table, ratio)
        if hits.empty:
            sys.stderr.write(f"no spot pool above {ratio:g}× on-demand\n")
        # The table first: when the webhook then fails (exit 1), the alerts are not lost with it.
        emit(_render(hits, rendering(output, out), title=f"spot pools above {ratio:g}× on-demand",
                     meta={"schema": "spotplan.alerts/1", "ratio": ratio}), out)
        if webhook is not None:
            post_webhook(webhook, slack_payload(hits, ratio))
            sys.stderr.write(f"posted {len(hits)} alert(s) to the webhook\n")
