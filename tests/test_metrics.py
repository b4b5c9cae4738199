"""/metrics: every HTTP request counted by the handler it reached (never its raw path), method and status."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Harness, png_bytes


async def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await h.client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def requests(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], handler: str, method: str,
             status: int) -> float:
    labels = (("handler", handler), ("method", method), ("status", str(status)))
    return samples.get(("imagegate_http_requests_total", labels), 0.0)


async def test_requests_are_counted_by_handler_method_and_status(harness: Harness) -> None:
    h = harness
    for _ in range(2):
        ok = await h.client.post("/v1/images/edits", headers=h.auth, data={"model": "local-edit", "prompt": "sepia"},
                                 files={"image": ("a.png", png_bytes(), "image/png")})
        assert ok.status_code == 200
    assert (await h.client.post("/v1/images/edits", data={"model": "local-edit"})).status_code == 401
    for task in ("ldtask_" + "0" * 32, "ldtask_" + "1" * 32):  # two paths, one handler
        assert (await h.client.get(f"/v1/tasks/{task}", headers=h.auth)).status_code == 404
    assert (await h.client.get("/no/such/path")).status_code == 404
    assert (await h.client.request("BREW", "/v1/models")).status_code == 405

    samples = await scrape(h)
    assert requests(samples, "create_edit", "POST", 200) == 2
    assert requests(samples, "create_edit", "POST", 401) == 1
    assert requests(samples, "get_task", "GET", 404) == 2
    assert requests(samples, "unmatched", "GET", 404) == 1
    assert requests(samples, "list_models", "other", 405) == 1  # an unknown method is not a label value
    assert not any("ldtask_" in value or "/no/such" in value for _, labels in samples for _, value in labels)
    durations = samples[("imagegate_http_request_seconds_count", (("handler", "create_edit"),))]
    assert durations == 3
    assert samples[("imagegate_http_request_seconds_sum", (("handler", "create_edit"),))] > 0
