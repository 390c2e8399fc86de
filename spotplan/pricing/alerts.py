"""The seed's alert rule: a spot pool whose current price exceeds ratio × the on-demand price of the
same instance type in the same region. Finds such pools and sends them to a Slack-compatible webhook
(JSON POST with a `text` field, which Slack, Mattermost, Rocket.Chat and Teams workflows accept)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from spotplan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

ALERT_COLUMNS = (
    "provider", "region", "zone", "instance_type", "gpu_model", "spot_price", "on_demand_price",
    "spot_to_on_demand", "observed_at",
)


def find_alerts(table: pd.DataFrame, ratio: float = 0.8) -> pd.DataFrame:
    """Pools whose latest spot price is above `ratio` × the latest on-demand price, worst first. The
    pools and their on-demand prices are `prices show`'s (`compare.side_by_side`), so both agree."""
    from spotplan.pricing.compare import side_by_side

    check_ratio(ratio)
    rows = side_by_side(table).rename(columns={"spot_per_hour": "spot_price", "on_demand_per_hour": "on_demand_price"})
    rows = rows[rows["spot_price"].notna() & (rows["on_demand_price"] > 0)]
    rows = rows.assign(spot_to_on_demand=rows["spot_price"].astype(float) / rows["on_demand_price"].astype(float))
    hits = rows[rows["spot_price"] > ratio * rows["on_demand_price"]]
    hits = hits.sort_values(["spot_to_on_demand", "provider", "region", "zone"], ascending=[False, True, True, True])
    return hits[list(ALERT_COLUMNS)].reset_index(drop=True)


def check_ratio(ratio: float) -> None:
    """A positive, finite ratio: NaN would match no pool and say so as if all were fine, and
    infinity can be written in no JSON the alerts go out as."""
    if not 0 < ratio < math.inf:
        raise InputError(f"--ratio is {ratio}, expected a positive number (e.g. 0.8)")


def slack_payload(alerts: pd.DataFrame, ratio: float) -> dict[str, Any]:
    """One message: a headline and one line per pool (Slack caps a message; keep the first 40)."""
    n = len(alerts)
    head = (f"spotplan: {n} spot pool{'s' if n != 1 else ''} above {ratio:g}× on-demand"
            if n else f"spotplan: no spot pool above {ratio:g}× on-demand")
    lines = []
    for r in alerts.head(40).to_dict("records"):
        zone = r["zone"] or "(region)"
        lines.append(
            f"• {r['provider']} {r['region']} {zone} {r['instance_type']}: spot ${r['spot_price']:.4f}/h = "
            f"{r['spot_to_on_demand']:.0%} of on-demand ${r['on_demand_price']:.4f}/h (as of {r['observed_at']})"
        )
    if n > 40:
        lines.append(f"… and {n - 40} more")
    return {"text": "\n".join([head, *lines])}


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    from spotplan.pricing.sources import retry_attempts, retry_base_seconds
    from spotplan.webhook import post_json

    post_json(url, payload, attempts=retry_attempts(), backoff=retry_base_seconds())
