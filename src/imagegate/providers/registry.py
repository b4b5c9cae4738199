"""Provider types by name. Adding a vendor adds its module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from imagegate.config import ConfigError, ProviderSettings
from imagegate.core.ports import Provider, ResultFetcher
from imagegate.providers.azure import AzureProvider
from imagegate.providers.bfl import BflProvider
from imagegate.providers.openai import OpenAIProvider
from imagegate.providers.xai import XaiProvider

# settings, and the fetcher for result URLs on hosts other than the provider's own
ProviderFactory = Callable[[ProviderSettings, ResultFetcher | None], Provider]


def _local(settings: ProviderSettings, results: ResultFetcher | None) -> Provider:
    from imagegate.providers.local import LocalProvider  # NumPy and OpenCV load only where the engine runs

    return LocalProvider()


FACTORIES: dict[str, ProviderFactory] = {
    "local": _local,
    "openai": lambda s, r: OpenAIProvider(name=s.name, base_url=s.base_url or "https://api.openai.com/v1",
                                          api_key=s.api_key, timeout=s.timeout, organization=s.organization,
                                          project=s.project, results=r),
    "azure": lambda s, r: AzureProvider(name=s.name, base_url=s.base_url, api_key=s.api_key,
                                        api_version=s.api_version, deployments=s.deployments, timeout=s.timeout,
                                        results=r),
    "xai": lambda s, r: XaiProvider(name=s.name, base_url=s.base_url or "https://api.x.ai/v1", api_key=s.api_key,
                                    timeout=s.timeout, results=r),
    "bfl": lambda s, r: BflProvider(name=s.name, base_url=s.base_url or "https://api.bfl.ai", api_key=s.api_key,
                                    timeout=s.timeout, results=r),
}


def build_provider(settings: ProviderSettings, results: ResultFetcher | None = None) -> Provider:
    try:
        factory = FACTORIES[settings.type]
    except KeyError:
        raise ConfigError(f"[[providers]] {settings.name}: unknown type {settings.type!r}; known types: "
                          f"{', '.join(sorted(FACTORIES))}") from None
    try:
        return factory(settings, results)
    except ValueError as exc:  # a provider's constructor refusing its settings
        raise ConfigError(f"[[providers]] {settings.name}: {exc}") from None
