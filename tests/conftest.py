"""Shared fixtures: the real data folder beside the project, isolated user dirs, the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPOTPLAN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="Rewrite golden files."
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden")) or os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip with the reason when this checkout has no shared folder beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the project in CI)")
    return SHARED_DATA


@pytest.fixture
def pricing_emu(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The three clouds' price APIs (tests/emulators/pricing.py) on 127.0.0.1, built from the real
    data, with spotplan's env pointed at them and nothing left to reach a real account."""
    from tests.emulators.pricing import PricingData, PricingEmulator

    server = PricingEmulator(PricingData(shared_data), tmp_path).start()
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the price store and journal of every test out of the real user dirs."""
    base = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def sockdir():  # type: ignore[no-untyped-def]
    """A short temp dir for unix sockets: AF_UNIX paths are limited to ~107 bytes, tmp_path can be longer."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="spw", dir="/tmp") as d:
        yield Path(d)


# -- the local clouds the migrate tests run against --------------------------------------------------


@pytest.fixture(scope="module")
def gcp():  # type: ignore[no-untyped-def]
    """The GCP Compute emulator, one per test module."""
    from tests.emulators.gcp_compute import GcpComputeEmulator

    emu = GcpComputeEmulator()
    yield emu
    emu.stop()


@pytest.fixture
def gcp_env(gcp, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """spotplan pointed at the `gcp` emulator, anonymously, with its injected faults cleared."""
    monkeypatch.setenv("SPOTPLAN_GCP_COMPUTE_ENDPOINT", gcp.url)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    gcp.faults.clear()
    return gcp


@pytest.fixture(scope="module")
def clouds():  # type: ignore[no-untyped-def]
    """moto (behind the fault proxy), the GCP Compute emulator and the Azure ARM emulator at once."""
    from tests.emulators.azure_arm import AzureArmEmulator
    from tests.emulators.gcp_compute import GcpComputeEmulator
    from tests.test_migrate_aws import Cloud

    aws, gcp, az = Cloud(), GcpComputeEmulator(), AzureArmEmulator(token="three-clouds-token")
    yield aws, gcp, az
    aws.close()
    gcp.stop()
    az.stop()


@pytest.fixture
def clouds_env(clouds, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """spotplan pointed at all three `clouds`."""
    aws, gcp, az = clouds
    for k, v in aws.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SPOTPLAN_GCP_COMPUTE_ENDPOINT", gcp.url)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("SPOTPLAN_AZURE_ARM_ENDPOINT", az.url)
    monkeypatch.setenv("SPOTPLAN_AZURE_TOKEN", az.token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", az.ca_file)
    return clouds
