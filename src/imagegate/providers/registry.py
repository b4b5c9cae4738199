"""Provider types by name. Adding a vendor adds its module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from imagegate.config import ConfigError, ProviderSettings
from imagegate.core.ports import Provider
from imagegate.providers.azure import AzureProvider
from imagegate.providers.bfl import BflProvider
from imagegate.providers.openai import OpenAIProvider
from imagegate.providers.xai import XaiProvider

ProviderFactory = Callable[[ProviderSettings], Provider]


def _local(settings: ProviderSettings) -> Provider:
    from imagegate.providers.local import LocalProvider  # NumPy and OpenCV load only where the engine runs

    return LocalProvider()


FACTORIES: dict[str, ProviderFactory] = {
    "local": _local,
    "openai": lambda s: OpenAIProvider(name=s.name, base_url=s.base_url or "https://api.openai.com/v1",
                                       api_key=s.api_key, timeout=s.timeout, organization=s.organization,
                                       project=s.project),
    "azure": lambda s: AzureProvider(name=s.name, base_url=s.base_url, api_key=s.api_key,
                                     api_version=s.api_version, deployments=s.deployments, timeout=s.timeout),
    "xai": lambda s: XaiProvider(name=s.name, base_url=s.base_url or "https://api.x.ai/v1", api_key=s.api_key,
                                 timeout=s.timeout),
    "bfl": lambda s: BflProvider(name=s.name, base_url=s.base_url or "https://api.bfl.ai", api_key=s.api_key,
                                 timeout=s.timeout),
}


def build_provider(settings: ProviderSettings) -> Provider:
    try:
        factory = FACTORIES[settings.type]
    except KeyError:
        raise ConfigError(f"[[providers]] {settings.name}: unknown type {settings.type!r}; known types: "
                          f"{', '.join(sorted(FACTORIES))}") from None
    try:
        return factory(settings)
    except ValueError as exc:  # a provider's constructor refusing its settings
        raise ConfigError(f"[[providers]] {settings.name}: {exc}") from None
