"""The config file: sections for tasks, billing and routing, with their defaults and their checks."""

from __future__ import annotations

from typing import Any

import pytest

from imagegate.config import ConfigError, Settings, settings_from_mapping
from imagegate.core.routing import RoutingPolicy


def test_defaults_when_sections_are_absent() -> None:
    settings = settings_from_mapping({})
    assert settings == Settings()
    assert settings.tasks.workers == 4 and settings.tasks.deadline == 900.0
    assert settings.billing.hold_ttl > settings.limits.request_timeout
    assert settings.routing == RoutingPolicy()


def test_sections_are_read() -> None:
    settings = settings_from_mapping({
        "limits": {"request_timeout": 120.0, "header_timeout": 5.0, "body_timeout": 12.0, "keep_alive": 20.0},
        "billing": {"hold_ttl": 300.0, "sweep_interval": 5.0},
        "storage": {"output_retention": 7200.0, "file_retention": 600.0},
        "tasks": {"workers": 2, "lease": 10.0, "deadline": 60.0, "retention": 3600.0, "max_attempts": 5},
        "routing": {"max_attempts": 2, "failure_threshold": 3, "cooldown": 10.0, "max_cooldown": 60.0},
        "providers": [{"name": "a", "type": "openai", "models": ["gpt-image-1.5"], "priority": 1, "weight": 3},
                      {"name": "b", "type": "openai", "models": ["gpt-image-1.5"], "priority": 1, "weight": 1}],
    })
    assert settings.limits.request_timeout == 120.0
    assert (settings.limits.header_timeout, settings.limits.body_timeout, settings.limits.keep_alive) == (5.0, 12.0,
                                                                                                        20.0)
    assert (settings.billing.hold_ttl, settings.billing.sweep_interval) == (300.0, 5.0)
    assert (settings.tasks.workers, settings.tasks.max_attempts) == (2, 5)
    assert (settings.storage.output_retention, settings.storage.file_retention) == (7200.0, 600.0)
    assert settings.routing == RoutingPolicy(max_attempts=2, failure_threshold=3, cooldown=10.0, max_cooldown=60.0)
    assert [p.weight for p in settings.providers] == [3, 1]


@pytest.mark.parametrize(("raw", "names"), [
    ({"tasks": {"workerz": 1}}, "workerz"),
    ({"billing": {"hold_ttl": 10.0}}, "hold_ttl"),  # shorter than the request timeout
    ({"tasks": {"deadline": 100.0, "retention": 50.0}}, "retention"),
    ({"tasks": {"max_attempts": 0}}, "max_attempts"),
    ({"routing": {"max_attempts": 0}}, "max_attempts"),
    ({"routing": {"cooldown": 600.0}}, "cooldown"),
    ({"tasks": {"retention": 7 * 86400.0}, "storage": {"output_retention": 86400.0}}, "output_retention"),
    ({"storage": {"file_retention": 0}}, "file_retention"),
    ({"limits": {"header_timeout": 0}}, "header_timeout"),
    ({"limits": {"body_timeout": -1.0}}, "body_timeout"),
])
def test_inconsistent_settings_are_refused_by_name(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(raw)
    assert names in str(info.value)
