"""Posting an alert to a webhook: one JSON POST (Slack-compatible when the payload has `text`) for
`prices alerts` and for the node agent. Standard library HTTP, so `watch` stays light; 429, 5xx
answers and dropped connections are retried with backoff (tenacity), anything else is final."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from spotplan.errors import CloudError, InputError


def check_webhook_url(url: str) -> None:
    """An http(s) URL with a host, checked before anything else runs: a typo is a usage error
    (exit 2), not a failed POST (exit 1) found when the alert is due."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"--webhook is {url!r}, expected an http:// or https:// URL")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError))


def post_json(url: str, payload: Mapping[str, Any], timeout: float = 15.0, attempts: int = 3,
              backoff: float = 0.5) -> int:
    """POST `payload` as JSON to `url`; the answer's HTTP status. CloudError naming the URL when the
    last attempt fails, or when the URL cannot be used at all. `timeout` bounds each socket
    operation of an attempt (urllib's meaning), not the attempt as a whole."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    body = json.dumps(payload).encode()

    def send() -> int:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's own URL)
            return int(resp.status)

    retrying = Retrying(retry=retry_if_exception(_retryable), stop=stop_after_attempt(max(1, attempts)),
                        wait=wait_random_exponential(multiplier=backoff, max=max(backoff * 8, 0.001)), reraise=True)
    try:
        return retrying(send)
    except urllib.error.HTTPError as exc:
        raise CloudError(f"webhook {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CloudError(f"webhook {url}: {reason}") from exc
    except (ValueError, http.client.HTTPException) as exc:  # not a usable URL; a garbled answer
        raise CloudError(f"webhook {url}: {exc}") from exc
