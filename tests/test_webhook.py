"""`spotplan.webhook.post_json`, the one sender behind `prices alerts --webhook` and `watch --webhook`,
against a local Slack-style receiver: retried on 429/5xx and dropped connections, final on 4xx."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from spotplan.errors import CloudError
from spotplan.webhook import post_json
from tests.emulators._http import closed_url
from tests.emulators.metadata import WebhookReceiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver  # type: ignore[misc]


def test_posts_json_and_returns_the_status(hook: WebhookReceiver) -> None:
    assert post_json(hook.url, {"text": "spot is near on-demand", "n": 2}, backoff=0) == 200
    assert hook.messages == [{"text": "spot is near on-demand", "n": 2}]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_answers_are_retried(hook: WebhookReceiver, status: int) -> None:
    hook.fail_next(status, count=2)
    assert post_json(hook.url, {"text": "x"}, attempts=3, backoff=0) == 200
    assert len([r for r in hook.requests if r.method == "POST"]) == 3


def test_the_last_failure_names_the_url_and_status(hook: WebhookReceiver) -> None:
    hook.fail_next(503, count=5)
    with pytest.raises(CloudError, match=r"^webhook http://127\.0\.0\.1:\d+/hooks/T000/B000/XXXX: HTTP 503"):
        post_json(hook.url, {"text": "x"}, attempts=2, backoff=0)
    assert len(hook.requests) == 2


def test_a_rejected_payload_is_not_retried(hook: WebhookReceiver) -> None:
    with pytest.raises(CloudError, match="HTTP 400"):
        post_json(hook.url, {"no": "text"}, attempts=3, backoff=0)
    assert len(hook.requests) == 1


def test_nothing_listening_is_a_cloud_error() -> None:
    url = closed_url("/x")
    with pytest.raises(CloudError, match=rf"^webhook {re.escape(url)}: .*refused"):
        post_json(url, {"text": "x"}, attempts=2, backoff=0)


@pytest.mark.parametrize("url", ["not-a-url", "ftp://h/x", "http://"])
def test_an_unusable_url_is_a_usage_error_up_front(url: str) -> None:
    from spotplan.errors import InputError
    from spotplan.webhook import check_webhook_url

    with pytest.raises(InputError, match="expected an http:// or https:// URL"):
        check_webhook_url(url)
    with pytest.raises(CloudError, match=f"^webhook {url}: "):  # and if it gets that far, still a CloudError
        post_json(url, {"text": "x"}, attempts=1, backoff=0)


def test_watch_checks_the_webhook_at_start(runner) -> None:  # type: ignore[no-untyped-def]
    from spotplan.cli.main import app

    result = runner.invoke(app, ["watch", "--source", "url", "--endpoint", "http://127.0.0.1:9/x", "--once",
                                 "--webhook", "hooks.slack.com/x"])
    assert result.exit_code == 2 and "--webhook is 'hooks.slack.com/x'" in result.stderr
