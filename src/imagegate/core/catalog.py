"""The catalog: which models exist, what they accept, and which routes (providers) serve them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from imagegate.core.capabilities import ModelSpec
from imagegate.core.errors import InvalidRequest, ModelNotFound
from imagegate.core.jobs import Operation
from imagegate.core.ports import Provider


@dataclass(frozen=True, slots=True)
class Route:
    """One provider that serves one model."""

    provider_name: str
    provider: Provider
    priority: int = 1
    weight: int = 1
    provider_type: str = ""


class Catalog:
    """Models that have at least one route, looked up by public id."""

    def __init__(self, specs: Mapping[str, ModelSpec], routes: Mapping[str, Iterable[Route]]) -> None:
        self._routes = {model: sorted(rs, key=lambda r: r.priority) for model, rs in routes.items() if rs}
        self._specs = {model: _served(spec, self._routes[model]) for model, spec in specs.items()
                       if model in self._routes}

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

    def default_for(self, operation: Operation, preferred: str | None = None) -> ModelSpec:
        """The model a request of `operation` that names none gets: `preferred` (the operator's default) if it
        does the operation, else the first served model the catalog marks as that operation's default."""
        if preferred is not None and operation in self.spec(preferred).operations:
            return self.spec(preferred)
        for spec in self._specs.values():
            rules = spec.operations.get(operation)
            if rules is not None and rules.default:
                return spec
        raise InvalidRequest("'model' is required.", param="model")

    def routes(self, model_id: str, operation: Operation | None = None) -> list[Route]:
        """The model's routes; with `operation`, those whose provider type can do it."""
        routes = self._routes[model_id]
        if operation is None:
            return list(routes)
        spec = self._specs[model_id]
        return [r for r in routes if not r.provider_type or spec.serves(operation, r.provider_type)]


def _served(spec: ModelSpec, routes: Iterable[Route]) -> ModelSpec:
    """The spec with only the operations some route of it can do (a model whose only routes cannot vary
    images serves no variations)."""
    types = {r.provider_type for r in routes}
    if "" in types:
        return spec
    return replace(spec, operations={op: rules for op, rules in spec.operations.items()
                                     if any(spec.serves(op, t) for t in types)})
