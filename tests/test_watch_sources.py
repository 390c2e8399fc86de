"""The metadata emulators follow the documented status codes, and each spotplan.watch source reads
them correctly: tokens, long-polls, rate limits, failures, acknowledgement and auto-detection."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from spotplan.watch.http import HttpError, endpoint_problem, request
from spotplan.watch.sources import (
    AwsImds,
    AzureScheduledEvents,
    EciGuestAgent,
    GcpMetadata,
    MetadataError,
    UrlSource,
    detect_source,
    make_source,
    parse_time,
)
from tests.emulators._http import closed_url
from tests.emulators.metadata import (
    AwsImdsEmulator,
    AzureScheduledEventsEmulator,
    EciGuestAgentEmulator,
    GcpMetadataEmulator,
    NoticeUrlEmulator,
)

pytestmark = pytest.mark.timeout(30)


# -- AWS IMDSv2 ------------------------------------------------------------------------------------
def test_imds_emulator_token_rules() -> None:
    with AwsImdsEmulator() as emu:
        put = lambda headers, path="/latest/api/token": request(emu.endpoint, "PUT", path, headers=headers)  # noqa: E731
        assert put({}).status == 400
        assert put({"X-aws-ec2-metadata-token-ttl-seconds": "0"}).status == 400
        assert put({"X-aws-ec2-metadata-token-ttl-seconds": "21601"}).status == 400
        assert put({"X-aws-ec2-metadata-token-ttl-seconds": "abc"}).status == 400
        assert put({"X-aws-ec2-metadata-token-ttl-seconds": "60"}, "/2021-03-23/api/token").status == 403
        assert put({"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"}).status == 403
        ok = put({"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        assert ok.status == 200 and ok.header("x-aws-ec2-metadata-token-ttl-seconds") == "60"
        path = "/latest/meta-data/spot/instance-action"
        assert request(emu.endpoint, "GET", path).status == 401
        assert request(emu.endpoint, "GET", path, headers={"X-aws-ec2-metadata-token": "bogus"}).status == 401
        assert request(emu.endpoint, "GET", path, headers={"X-aws-ec2-metadata-token": ok.text}).status == 404


def test_aws_source_reads_the_interruption_notice() -> None:
    with AwsImdsEmulator() as emu:
        src = AwsImds(emu.endpoint)
        assert src.poll() is None and src.probe()
        at = emu.schedule_notice(0)
        notice = src.poll()
        assert notice is not None and notice.source == "aws" and notice.kind == "terminate" and notice.actionable
        assert notice.deadline == (at + timedelta(seconds=120)).replace(microsecond=0)
        assert src.token_fetches == 1  # one token serves every request while it is valid


def test_aws_token_is_refreshed_before_expiry_and_after_a_401() -> None:
    with AwsImdsEmulator(token_ttl_cap=2) as emu:
        src = AwsImds(emu.endpoint)
        assert src.poll() is None
        time.sleep(2.1)  # the 2 s token has expired by now; the source must not use it
        assert src.poll() is None and src.token_fetches == 2
        emu.tokens.clear()  # the service forgets every token (e.g. IMDS restarted)
        assert src.poll() is None and src.token_fetches == 3


def test_aws_rebalance_is_reported_once_and_is_not_a_reclaim() -> None:
    with AwsImdsEmulator() as emu:
        src = AwsImds(emu.endpoint)
        emu.schedule_rebalance(0)
        first = src.poll()
        assert first is not None and first.kind == "rebalance" and not first.actionable
        assert src.poll() is None
        emu.schedule_notice(0)
        assert src.poll().kind == "terminate"


def test_aws_hibernate_has_no_grace() -> None:
    with AwsImdsEmulator(action="hibernate") as emu:
        emu.schedule_notice(0)
        notice = AwsImds(emu.endpoint).poll()
        assert notice.kind == "hibernate" and notice.deadline == notice.detected_at


def test_aws_errors_raise_and_the_next_poll_recovers() -> None:
    with AwsImdsEmulator() as emu:
        src = AwsImds(emu.endpoint)
        src.poll()
        emu.fail_next(500)
        with pytest.raises(MetadataError, match="500"):
            src.poll()
        assert src.poll() is None
    with pytest.raises(MetadataError):
        AwsImds(closed_url()).poll()


# -- GCP metadata ---------------------------------------------------------------------------------
def test_gcp_emulator_header_etag_and_wait_for_change() -> None:
    with GcpMetadataEmulator() as emu:
        path = "/computeMetadata/v1/instance/preempted"
        denied = request(emu.endpoint, "GET", path)
        assert denied.status == 403 and "Missing Metadata-Flavor:Google header." in denied.text
        hdr = {"Metadata-Flavor": "Google"}
        first = request(emu.endpoint, "GET", path, headers=hdr)
        assert first.status == 200 and first.text == "FALSE" and len(first.header("etag")) == 16
        t0 = time.monotonic()
        query = f"?wait_for_change=true&timeout_sec=1&last_etag={first.header('etag')}"
        same = request(emu.endpoint, "GET", path + query, headers=hdr, timeout=5)
        assert same.text == "FALSE" and 0.9 < time.monotonic() - t0 < 2.5
        stale = request(emu.endpoint, "GET", f"{path}?wait_for_change=true&last_etag=0000000000000000", headers=hdr)
        assert stale.text == "FALSE"  # a different ETag returns at once
        assert request(emu.endpoint, "GET", "/computeMetadata/v1/instance/nope", headers=hdr).status == 404


def test_gcp_source_long_polls_and_sees_the_flip_at_once() -> None:
    with GcpMetadataEmulator() as emu:
        src = GcpMetadata(emu.endpoint)
        assert src.poll() is None and src.etag
        emu.schedule_notice(0.4)
        t0 = time.monotonic()
        notice = src.poll(1.0)
        took = time.monotonic() - t0
        assert notice is not None and notice.kind == "preempt" and notice.source == "gcp"
        assert 0.35 < took < 1.0, took
        polls = [r for r in emu.requests if r.path.endswith("/preempted")]
        assert len(polls) == 2, "a long-poll source must not busy-poll"
        assert polls[-1].query["last_etag"] == [GcpMetadataEmulator.etag("FALSE")]


def test_gcp_host_maintenance_that_stops_the_vm_is_a_notice() -> None:
    """GPU VMs cannot live-migrate: TERMINATE_ON_HOST_MAINTENANCE stops them like a preemption, so it
    is a notice, acted on at once; MIGRATE_ON_HOST_MAINTENANCE and a server without the key are not."""
    with GcpMetadataEmulator() as emu:
        src = GcpMetadata(emu.endpoint, long_poll_seconds=1)
        assert src.poll() is None
        emu.values["instance/maintenance-event"] = "MIGRATE_ON_HOST_MAINTENANCE"
        assert src.poll(1.0) is None
        emu.values["instance/maintenance-event"] = "TERMINATE_ON_HOST_MAINTENANCE"
        notice = src.poll(1.0)
        assert notice is not None and (notice.source, notice.kind) == ("gcp", "maintenance")
        assert notice.deadline is not None and notice.actionable
        assert [r.path.rsplit("/", 1)[-1] for r in emu.requests[-2:]] == ["preempted", "maintenance-event"]
        del emu.values["instance/maintenance-event"]
        assert src.poll(1.0) is None


def test_gcp_source_without_change_returns_none_after_timeout() -> None:
    with GcpMetadataEmulator() as emu:
        src = GcpMetadata(emu.endpoint, long_poll_seconds=1)
        src.poll()
        assert src.poll(1.0) is None
        emu.fail_next(503)
        with pytest.raises(MetadataError):
            src.poll(1.0)
        assert src.etag is None  # starts over with a plain GET
        assert src.poll(1.0) is None


# -- Azure Scheduled Events -----------------------------------------------------------------------
def test_azure_emulator_rejects_missing_header_version_and_floods() -> None:
    with AzureScheduledEventsEmulator() as emu:
        url = "/metadata/scheduledevents?api-version=2020-07-01"
        assert request(emu.endpoint, "GET", url).status == 400
        assert request(emu.endpoint, "GET", "/metadata/scheduledevents", headers={"Metadata": "true"}).status == 400
        time.sleep(1.05)
        codes = [request(emu.endpoint, "GET", url, headers={"Metadata": "true"}).status for _ in range(7)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        time.sleep(1.05)
        bad = request(emu.endpoint, "POST", url, headers={"Metadata": "true"}, body=b'{"nope": 1}')
        assert bad.status == 400


def test_azure_source_preempt_ack_and_started() -> None:
    with AzureScheduledEventsEmulator(not_before_seconds=30) as emu:
        src = AzureScheduledEvents(emu.endpoint)
        assert src.poll() is None and src.resource == "vm-spot"
        at = emu.schedule_notice(0)
        notice = src.poll()
        assert notice.kind == "preempt" and notice.event_id
        assert notice.deadline == (at + timedelta(seconds=30)).replace(microsecond=0)
        assert emu.document()["DocumentIncarnation"] == 2
        assert src.acknowledge(notice) and notice.acked and emu.acks == [notice.event_id]
        started = src.poll()  # NotBefore is "" once started: the deadline is now
        assert started.event_id == notice.event_id and started.deadline == started.detected_at
        assert emu.document()["Events"][0]["EventStatus"] == "Started"


def test_azure_source_ignores_events_for_other_vms() -> None:
    with AzureScheduledEventsEmulator(resources=["another-vm"]) as emu:
        emu.schedule_notice(0)
        assert AzureScheduledEvents(emu.endpoint).poll() is None
        assert AzureScheduledEvents(emu.endpoint, resource="another-vm").poll().kind == "preempt"


def test_azure_source_stays_under_the_rate_limit_and_backs_off_on_429() -> None:
    with AzureScheduledEventsEmulator() as emu:
        src = AzureScheduledEvents(emu.endpoint, resource="vm-spot")
        t0 = time.monotonic()
        for _ in range(9):
            src.poll(0)
        assert emu.throttled == 0 and time.monotonic() - t0 >= 8 * 0.25 - 0.01
    with AzureScheduledEventsEmulator(max_per_second=1) as emu:
        src = AzureScheduledEvents(emu.endpoint, resource="vm-spot")
        src.poll(0)
        with pytest.raises(MetadataError, match="429"):
            src.poll(0)
        t0 = time.monotonic()
        src.poll(0)  # waits out the back-off instead of hammering the service
        assert time.monotonic() - t0 >= 0.9 and emu.throttled == 1


# -- ECI unix socket and a generic URL -------------------------------------------------------------
@pytest.mark.parametrize("as_text", [False, True])
def test_eci_source_over_a_unix_socket(sockdir: Path, as_text: bool) -> None:
    with EciGuestAgentEmulator(str(sockdir / "eci.sock"), notice_lead=30, as_text=as_text) as emu:
        src = EciGuestAgent(emu.endpoint)
        assert emu.endpoint.startswith("unix:/") and src.probe() and src.poll() is None
        at = emu.schedule_notice(0)
        notice = src.poll()
        assert notice.kind == "terminate" and notice.deadline == (at + timedelta(seconds=30)).replace(microsecond=0)
    assert not EciGuestAgent(f"unix:{sockdir}/absent.sock").probe()


def test_url_source() -> None:
    with NoticeUrlEmulator(notice_lead=10) as emu:
        src = UrlSource(emu.url)
        assert src.poll() is None
        emu.schedule_notice(0)
        notice = src.poll()
        assert notice.source == "url" and notice.kind == "terminate" and notice.deadline is not None
    with pytest.raises(MetadataError):
        make_source("url", None)


def test_unreachable_endpoint_error_names_the_url_once() -> None:
    base = closed_url()
    with pytest.raises(MetadataError) as url_err:
        UrlSource(f"{base}/x").poll()
    assert str(url_err.value).startswith(f"GET {base}/x: ") and "/x/x" not in str(url_err.value)
    # An endpoint with a path prefix and a request path: the prefix once, then the path.
    with pytest.raises(HttpError) as prefixed:
        request(f"{base}/prefix/", "GET", "/latest/meta-data")
    assert str(prefixed.value).startswith(f"GET {base}/prefix/latest/meta-data: ")


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1/x", "127.0.0.1:9", "http://127.0.0.1:99999/", "unix:"])
def test_unusable_endpoint_is_a_usage_error(runner, endpoint: str) -> None:
    from spotplan.cli.main import app

    assert endpoint_problem(endpoint) is not None
    result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", endpoint, "--once"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --endpoint: ") and len(result.stderr.strip().splitlines()) == 1
    for fine in ("http://127.0.0.1:9/x", "https://127.0.0.1", "unix:/run/eci.sock", "unix:///run/eci.sock"):
        assert endpoint_problem(fine) is None


def test_rfc1123_and_rfc3339_times() -> None:
    a = parse_time("Tue, 09 Aug 2022 17:07:32 GMT")
    b = parse_time("2022-08-09T17:07:32Z")
    assert a == b and a.tzinfo is not None
    assert parse_time("") is None and parse_time("soon") is None


# -- auto-detection -------------------------------------------------------------------------------
@pytest.mark.parametrize("live", ["aws", "gcp", "azure", "eci"])
def test_auto_detection_finds_the_live_service(monkeypatch, sockdir: Path, live: str) -> None:
    emulators = {
        "aws": lambda: AwsImdsEmulator(),
        "gcp": lambda: GcpMetadataEmulator(),
        "azure": lambda: AzureScheduledEventsEmulator(),
        "eci": lambda: EciGuestAgentEmulator(str(sockdir / "eci.sock")),
    }
    for name in emulators:
        monkeypatch.setenv(
            {"aws": "SPOTPLAN_AWS_IMDS_ENDPOINT", "gcp": "SPOTPLAN_GCP_METADATA_ENDPOINT",
             "azure": "SPOTPLAN_AZURE_IMDS_ENDPOINT", "eci": "SPOTPLAN_ECI_SOCKET"}[name],
            f"unix:{sockdir}/none.sock" if name == "eci" else closed_url(),
        )
    env = {"aws": "SPOTPLAN_AWS_IMDS_ENDPOINT", "gcp": "SPOTPLAN_GCP_METADATA_ENDPOINT",
           "azure": "SPOTPLAN_AZURE_IMDS_ENDPOINT", "eci": "SPOTPLAN_ECI_SOCKET"}[live]
    with emulators[live]() as emu:
        monkeypatch.setenv(env, emu.endpoint)
        src = detect_source()
        assert src.name == live and src.endpoint == emu.endpoint
    with pytest.raises(MetadataError, match="no metadata service answered"):
        detect_source()


def test_eci_socket_env_takes_a_bare_path(monkeypatch, sockdir: Path) -> None:
    path = str(sockdir / "eci.sock")
    monkeypatch.setenv("SPOTPLAN_ECI_SOCKET", path)  # no unix: prefix, as the variable's name invites
    # Should the socket not be recognised, auto-detection must still stay on this machine.
    for var in ("SPOTPLAN_AWS_IMDS_ENDPOINT", "SPOTPLAN_GCP_METADATA_ENDPOINT", "SPOTPLAN_AZURE_IMDS_ENDPOINT"):
        monkeypatch.setenv(var, closed_url())
    with EciGuestAgentEmulator(path) as emu:
        src = make_source("eci")
        assert src.endpoint == f"unix:{path}" and src.poll() is None
        emu.schedule_notice(0)
        assert src.poll().kind == "terminate"
        assert detect_source().name == "eci"


# -- second audit ---------------------------------------------------------------------------------
def test_azure_acts_on_no_event_naming_vms_until_it_knows_its_own_name() -> None:
    """The name lookup fails at first (at boot the instance endpoint may not answer yet): it is asked
    again on the next poll, and meanwhile a neighbour's eviction is not taken for ours."""
    with AzureScheduledEventsEmulator(resources=["other-vm-in-avset"]) as emu:
        emu.schedule_notice(0)
        src = AzureScheduledEvents(emu.endpoint)
        emu.fail_next(500)  # the name lookup
        with pytest.raises(MetadataError, match="name is not known yet"):
            src.poll()
        assert src.poll() is None and src.resource == "vm-spot"
    with AzureScheduledEventsEmulator() as emu:  # the event names this VM: acted on once that is known
        emu.schedule_notice(0)
        src = AzureScheduledEvents(emu.endpoint)
        emu.fail_next(404)
        with pytest.raises(MetadataError, match="HTTP 404"):
            src.poll()
        notice = src.poll()
        assert notice is not None and notice.kind == "preempt"
    with AzureScheduledEventsEmulator(resources=[]) as emu:  # an event naming no VM is everyone's
        emu.schedule_notice(0)
        emu.fail_next(500)
        notice = AzureScheduledEvents(emu.endpoint).poll()
        assert notice is not None and notice.kind == "preempt"


@pytest.mark.parametrize("server", [{"etags": False}, {"long_polls": False}], ids=["no-etag", "no-long-poll"])
def test_a_gcp_server_that_answers_at_once_is_polled_at_the_interval(server: dict) -> None:
    from spotplan.watch.agent import Agent, WatchConfig

    with GcpMetadataEmulator(**server) as emu:
        emu.schedule_notice(1.0)
        result = Agent(WatchConfig(source="gcp", endpoint=emu.endpoint, interval=0.2)).run()
        polls = emu.count("GET", "/computeMetadata/v1/instance/preempted")
    assert result.notice is not None and result.notice.kind == "preempt"
    assert polls <= 8, f"{polls} polls in about 1 s at a 0.2 s interval"


def test_auto_detection_tries_spotplan_watch_url_first(monkeypatch, sockdir: Path) -> None:
    for var in ("SPOTPLAN_AWS_IMDS_ENDPOINT", "SPOTPLAN_GCP_METADATA_ENDPOINT", "SPOTPLAN_AZURE_IMDS_ENDPOINT"):
        monkeypatch.setenv(var, closed_url())
    monkeypatch.setenv("SPOTPLAN_ECI_SOCKET", f"unix:{sockdir}/none.sock")
    with NoticeUrlEmulator() as emu:
        monkeypatch.setenv("SPOTPLAN_WATCH_URL", emu.url)
        src = detect_source()
        assert src.name == "url" and src.endpoint == emu.url
        assert make_source("url").endpoint == emu.url
        # An --endpoint addresses the metadata services: the URL source is no candidate then.
        with pytest.raises(MetadataError, match="no metadata service answered"):
            detect_source(closed_url())
