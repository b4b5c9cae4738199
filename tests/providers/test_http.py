"""Reading an upstream's Retry-After, whatever form (or garbage) it comes in."""

from __future__ import annotations

import email.utils
import time

from imagegate.providers.http import retry_after


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "12"}) == 12.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after({"retry-after": future}) or 0) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after-ms": "x", "retry-after": "-4"}) == 0.0
    assert retry_after({}) is None
