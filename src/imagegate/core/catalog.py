"""The catalog: which models exist, what they accept, and which routes (providers) serve them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from imagegate.core.capabilities import ModelSpec
from imagegate.core.errors import ModelNotFound
from imagegate.core.ports import Provider


@dataclass(frozen=True, slots=True)
class Route:
    """One provider that serves one model."""

    provider_name: str
    provider: Provider
    priority: int = 1
    weight: int = 1


class Catalog:
    """Models that have at least one route, looked up by public id."""

    def __init__(self, specs: Mapping[str, ModelSpec], routes: Mapping[str, Iterable[Route]]) -> None:
        self._routes = {model: sorted(rs, key=lambda r: r.priority) for model, rs in routes.items() if rs}
        self._specs = {model: spec for model, spec in specs.items() if model in self._routes}

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._specs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())

    def spec(self, model_id: str, *, param: str = "model") -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            pass
        close = difflib.get_close_matches(model_id, list(self._specs), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ModelNotFound(f"The model '{model_id}' does not exist or is not served here.{hint}",
                            param=param, did_you_mean=close[0] if close else None)

    def routes(self, model_id: str) -> list[Route]:
        return list(self._routes[model_id])
