"""Provider types by name. Adding a vendor adds its module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from imagegate.config import ConfigError, ProviderSettings
from imagegate.core.ports import Provider
from imagegate.providers.local import LocalProvider
from imagegate.providers.openai import OpenAIProvider

ProviderFactory = Callable[[ProviderSettings], Provider]

FACTORIES: dict[str, ProviderFactory] = {
    "local": lambda s: LocalProvider(),
    "openai": lambda s: OpenAIProvider(name=s.name, base_url=s.base_url or "https://api.openai.com/v1",
                                       api_key=s.api_key, timeout=s.timeout, organization=s.organization,
                                       project=s.project),
}


def build_provider(settings: ProviderSettings) -> Provider:
    try:
        factory = FACTORIES[settings.type]
    except KeyError:
        raise ConfigError(f"[[providers]] {settings.name}: unknown type {settings.type!r}; known types: "
                          f"{', '.join(sorted(FACTORIES))}") from None
    return factory(settings)
