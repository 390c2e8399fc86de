"""`spotplan prices pull` on what a user gets wrong or a cloud answers oddly: an unknown --gpu or
region, a refused public feed, a rejected token, a non-USD meter, re-pulls of unchanged prices,
shapes the Retail API does not carry, and one AWS zone seen by name and by ID. Real SDKs against
the local emulators of tests/emulators/pricing.py."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from spotplan.cli.main import app
from spotplan.pricing.store import read_store
from tests.emulators.pricing import PricingEmulator

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def emu(pricing_emu: PricingEmulator, monkeypatch: pytest.MonkeyPatch) -> PricingEmulator:
    monkeypatch.setenv("SPOTPLAN_RETRY_BASE_SECONDS", "0")
    return pricing_emu


def _pull(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["prices", "pull", *args, "-o", "json"])


def _one_error_line(output: str) -> bool:
    """The error is the last thing printed, on one line (progress bars may come before it)."""
    return output.count("error:") == 1 and output[output.index("error:"):].count("\n") == 1


def _next_second() -> None:
    """Pull stamps are whole seconds: wait for the next one so two pulls are two instants."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    while datetime.now(timezone.utc).replace(microsecond=0) <= now:
        time.sleep(0.05)


def test_unknown_gpu_is_exit_2_on_every_cloud_and_sends_nothing(runner, emu: PricingEmulator) -> None:
    res = _pull(runner, "--provider", "all", "--gpu", "A1OO")
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "--gpu 'A1OO' is not a known GPU model" in line and "A100" in line
    assert read_store() is None and emu.data.requests == []


def test_known_gpu_with_no_aws_family_pulls_nothing_from_aws(runner, emu: PricingEmulator) -> None:
    # A10 is Azure's; AWS has no A10 family: the empty family filter must not become "every type".
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1", "--gpu", "A10")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["pulled"] == 0


@pytest.mark.parametrize("provider, region", [("aws", "us-east-9"), ("gcp", "us-east-1"), ("azure", "nowhere")])
def test_region_not_of_the_cloud_is_exit_2(runner, emu: PricingEmulator, provider: str, region: str) -> None:
    res = _pull(runner, "--provider", provider, "--region", region)
    assert res.exit_code == 2, res.output
    assert f"--region '{region}'" in res.output and _one_error_line(res.output)
    assert read_store() is None


def test_region_matches_in_any_case(runner, emu: PricingEmulator) -> None:
    res = _pull(runner, "--provider", "aws", "--region", "US-EAST-1", "--gpu", "V100")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None and set(df["region"]) == {"us-east-1"}


def test_refused_advisor_feed_keeps_every_clouds_prices_with_a_note(runner, emu: PricingEmulator) -> None:
    emu.data.deny.add("advisor")
    res = _pull(runner, "--provider", "all", "--region", "us-east-1", "--region", "us-central1",
                "--region", "eastus")
    assert res.exit_code == 0, res.output
    assert "Spot Instance Advisor feed failed" in res.stderr and "403" in res.stderr
    assert "interruption bands left empty" in res.stderr
    df = read_store()
    assert df is not None and set(df["provider"]) == {"aws", "gcp", "azure"}
    assert set(df.loc[df["provider"] == "aws", "interruption_band"]) == {""}


def test_refused_azure_retail_api_is_exit_4(runner, emu: PricingEmulator) -> None:
    emu.data.deny.add("azure")
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 4, res.output
    assert res.output.startswith("error: Azure Retail Prices API (eastus) answered 403")
    assert _one_error_line(res.output) and read_store() is None


def test_rejected_azure_token_is_one_line(runner, emu: PricingEmulator, monkeypatch) -> None:
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", "wrong")
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 4
    assert _one_error_line(res.output) and "az login" in res.output, res.output


def test_non_usd_retail_meter_is_left_out_not_stored_as_usd(runner, emu: PricingEmulator) -> None:
    item = next(i for i in emu.data.azure_items if i["armSkuName"] == "Standard_NC24ads_A100_v4"
                and i["armRegionName"] == "eastus" and i["skuName"].endswith("v4") and "Windows" not in
                i["productName"] and i["type"] == "Consumption")
    emu.data.azure_items.append({**item, "currencyCode": "EUR", "retailPrice": 999.0, "unitPrice": 999.0})
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 0, res.output
    assert "1 retail prices in EUR left out" in res.stderr
    df = read_store()
    assert df is not None
    od = df[(df["instance_type"] == "Standard_NC24ads_A100_v4") & (df["market"] == "on-demand")]
    assert od["price_per_hour"].tolist() == [item["retailPrice"]]


def test_repulls_of_unchanged_list_prices_stop_growing_the_store(runner, emu: PricingEmulator) -> None:
    assert _pull(runner, "--provider", "azure", "--region", "eastus").exit_code == 0
    first = read_store()
    assert first is not None
    _next_second()
    assert _pull(runner, "--provider", "azure", "--region", "eastus").exit_code == 0
    second = read_store()
    assert second is not None
    _next_second()
    res = _pull(runner, "--provider", "azure", "--region", "eastus")
    assert res.exit_code == 0, res.output
    third = read_store()
    assert third is not None
    # The second pull confirms each price (its newest quote); the third only moves that forward.
    assert json.loads(res.stdout)["rows"][0]["new"] == 0 and len(third) == len(second)
    od = third[(third["instance_type"] == "Standard_NC24ads_A100_v4") & (third["market"] == "on-demand")]
    assert len(od) == 2 and od["observed_at"].max() > second["observed_at"].max()
    first_od = first[(first["instance_type"] == "Standard_NC24ads_A100_v4") & (first["market"] == "on-demand")]
    assert od["observed_at"].min() == first_od["observed_at"].min()


def test_azure_shapes_filled_for_amd_sizes_and_from_the_snapshot(runner, emu: PricingEmulator) -> None:
    res = _pull(runner, "--provider", "azure")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None
    nv = df[df["instance_type"] == "Standard_NV32as_v4"]
    assert set(nv["gpu_model"]) == {"MI25"} and set(nv["gpu_count"]) == {1.0}
    ng = df[df["instance_type"] == "Standard_NG8ads_V620_v1"]
    assert set(ng["gpu_model"]) == {"V620"} and set(ng["gpu_count"]) == {0.25}
    # The Retail API carries no memory; the snapshot's figure stays what `prices show` prints.
    res = runner.invoke(app, ["prices", "show", "--provider", "azure", "--region", "eastus", "--gpu", "H100",
                              "-o", "json"])
    rows = [r for r in json.loads(res.stdout)["rows"] if r["instance_type"] == "Standard_NC40ads_H100_v5"]
    assert rows and all(r["memory_gib"] for r in rows), rows


def test_aws_zone_ids_take_the_names_the_pull_saw(runner, emu: PricingEmulator, shared_data: Path) -> None:
    tsv = shared_data / "ericpauley-aws-spot-price-history/prices/2022/05_gpu_subset.tsv"
    assert runner.invoke(app, ["prices", "import", str(tsv), "-o", "json"]).exit_code == 0
    df = read_store()
    assert df is not None and "use1-az1" in set(df["zone"])
    res = _pull(runner, "--provider", "aws", "--region", "us-east-1", "--days", "30")
    assert res.exit_code == 0, res.output
    df = read_store()
    assert df is not None
    zones = set(df.loc[(df["region"] == "us-east-1") & (df["market"] == "spot"), "zone"])
    # The emulator maps use1-azN to us-east-1 + "abcdefgh"[N-1]: only names remain, one per zone.
    assert zones and all(z.startswith("us-east-1") for z in zones), zones
    # A later import of IDs lands under the names too.
    assert runner.invoke(app, ["prices", "import", str(tsv), "-o", "json"]).exit_code == 0
    df = read_store()
    assert df is not None and not df.loc[df["region"] == "us-east-1", "zone"].str.contains("-az").any()


def test_unreachable_gcp_api_is_a_cloud_error(runner, emu: PricingEmulator, monkeypatch) -> None:
    """requests' connection errors come through the GCP REST transport unwrapped: still one line,
    exit 1, naming the API, not the catch-all's bare ConnectionError."""
    for env in ("SPOTPLAN_GCP_COMPUTE_ENDPOINT", "SPOTPLAN_GCP_BILLING_ENDPOINT"):
        monkeypatch.setenv(env, "http://127.0.0.1:9")
    res = _pull(runner, "--provider", "gcp", "--region", "us-central1")
    assert res.exit_code == 1, res.output
    assert "error: GCP " in res.output and "cannot reach the API" in res.output, res.output
    assert _one_error_line(res.output) and "-v" not in res.output.splitlines()[-1]
