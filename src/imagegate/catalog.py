"""Loading the built-in model catalog (data/models.toml) with price overrides from the config."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from imagegate.config import ConfigError
from imagegate.core.capabilities import ModelSpec, spec_from_mapping


def builtin_specs(price_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ModelSpec]:
    raw = tomllib.loads(resources.files("imagegate").joinpath("data/models.toml").read_text())
    default_values = raw.get("defaults", {}).get("values", {})
    models = raw["models"]
    for model_id, price in (price_overrides or {}).items():
        if model_id not in models:
            raise ConfigError(f"[prices.{model_id!r}]: no such model in the catalog")
        models[model_id] = {**models[model_id], "pricing": {**models[model_id].get("pricing", {}), **price}}
    try:
        return {model_id: spec_from_mapping(model_id, entry, default_values) for model_id, entry in models.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model catalog: {exc}") from exc
