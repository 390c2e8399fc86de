"""`spotplan prices alerts`: the seed's spot > ratio × on-demand rule, table/JSON and a
Slack-compatible webhook POST to a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from spotplan.cli.main import app

pytestmark = pytest.mark.timeout(60)
REGION = "us-test-1"


@pytest.fixture
def stored(runner, tmp_path: Path) -> None:
    f = tmp_path / "table.csv"
    f.write_text(
        "provider,region,zone,instance_type,gpu_model,gpu_count,market,price_per_hour,observed_at\n"
        f"aws,{REGION},,p3.2xlarge,V100,1,on-demand,3.06,2026-11-01T00:00:00Z\n"
        f"aws,{REGION},{REGION}a,p3.2xlarge,V100,1,spot,0.90,2026-11-01T00:00:00Z\n"
        f"aws,{REGION},{REGION}a,p3.2xlarge,V100,1,spot,2.80,2026-11-02T00:00:00Z\n"  # now 91.5%: alert
        f"aws,{REGION},{REGION}b,p3.2xlarge,V100,1,spot,3.00,2026-11-01T00:00:00Z\n"
        f"aws,{REGION},{REGION}b,p3.2xlarge,V100,1,spot,1.00,2026-11-02T00:00:00Z\n"  # was high, now fine
        f"aws,{REGION},{REGION}c,p3.2xlarge,V100,1,spot,2.40,2026-11-02T00:00:00Z\n"  # 78.4%: only below 0.78
    )
    assert runner.invoke(app, ["prices", "import", str(f)]).exit_code == 0


def _mine(stdout: str) -> list[dict]:
    return [r for r in json.loads(stdout)["rows"] if r["region"] == REGION]


def test_alerts_use_latest_price_and_ratio(runner, stored: None) -> None:
    res = runner.invoke(app, ["prices", "alerts", "-o", "json"])
    assert res.exit_code == 0, res.output
    rows = _mine(res.stdout)
    assert [r["zone"] for r in rows] == [f"{REGION}a"]
    assert rows[0]["spot_to_on_demand"] == pytest.approx(2.80 / 3.06)
    res = runner.invoke(app, ["prices", "alerts", "--ratio", "0.75", "-o", "json"])
    assert [r["zone"] for r in _mine(res.stdout)] == [f"{REGION}a", f"{REGION}c"]


def test_alerts_and_show_agree_and_provider_is_checked(runner, stored: None) -> None:
    # The alert's on-demand price is the one `prices show` puts beside the same pool.
    alert = _mine(runner.invoke(app, ["prices", "alerts", "--provider", "AWS", "-o", "json"]).stdout)[0]
    shown = json.loads(runner.invoke(app, ["prices", "show", "--region", REGION, "-o", "json"]).stdout)
    pool = next(r for r in shown["rows"] if r["zone"] == alert["zone"])
    assert (alert["spot_price"], alert["on_demand_price"]) == (pool["spot_per_hour"], pool["on_demand_per_hour"])
    bad = runner.invoke(app, ["prices", "alerts", "--provider", "ibm"])
    assert bad.exit_code == 2 and "--provider is 'ibm'" in bad.stderr


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        _Hook.bodies.append({"ctype": self.headers["Content-Type"], "json": json.loads(self.rfile.read(n))})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: object) -> None:
        return


@pytest.fixture
def hook() -> Iterator[str]:
    _Hook.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhook_gets_slack_message(runner, stored: None, hook: str) -> None:
    res = runner.invoke(app, ["prices", "alerts", "--provider", "aws", "--webhook", hook, "-o", "csv"])
    assert res.exit_code == 0, res.output
    assert len(_Hook.bodies) == 1
    body = _Hook.bodies[0]
    assert body["ctype"] == "application/json"
    text = body["json"]["text"]
    assert text.startswith("spotplan: ") and "above 0.8× on-demand" in text
    assert f"aws {REGION} {REGION}a p3.2xlarge: spot $2.8000/h = 92% of on-demand $3.0600/h" in text
    assert f"{REGION}b" not in text


def test_webhook_failure_is_exit_1(runner, stored: None) -> None:
    from tests.emulators._http import closed_url

    res = runner.invoke(app, ["prices", "alerts", "--webhook", closed_url("/x")],
                        env={"SPOTPLAN_RETRY_ATTEMPTS": "1"})
    assert res.exit_code == 1 and "webhook" in res.output and "Traceback" not in res.output


def test_bad_ratio_exit_2(runner) -> None:
    res = runner.invoke(app, ["prices", "alerts", "--ratio", "0"])
    assert res.exit_code == 2 and "--ratio" in res.output


@pytest.mark.parametrize("ratio", ["nan", "inf", "-inf"])
def test_ratio_that_is_not_a_finite_number_exit_2(runner, ratio: str) -> None:
    res = runner.invoke(app, ["prices", "alerts", "--ratio", ratio, "-o", "json"])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == [f"error: --ratio is {float(ratio)}, expected a positive number (e.g. 0.8)"]


@pytest.mark.parametrize("url", ["not-a-url", "ftp://example.com/x", "http://", "127.0.0.1:9/x"])
def test_webhook_that_is_not_a_url_exit_2_one_line(runner, url: str) -> None:
    res = runner.invoke(app, ["prices", "alerts", "--webhook", url])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines() == [f"error: --webhook is {url!r}, expected an http:// or https:// URL"]


class _Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        return


def test_failed_webhook_still_prints_the_alerts_then_exit_1(runner, stored: None) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Refusing)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        res = runner.invoke(app, ["prices", "alerts", "--webhook", url, "-o", "json"])
    finally:
        server.shutdown()
        server.server_close()
    assert res.exit_code == 1
    assert [r["zone"] for r in _mine(res.stdout)] == [f"{REGION}a"]  # the data is not lost
    assert res.stderr.splitlines()[-1] == f"error: webhook {url}: HTTP 400 Bad Request"
