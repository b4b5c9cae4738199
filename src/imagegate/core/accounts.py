"""Who is calling: the account and key behind an authenticated request."""

from __future__ import annotations

from dataclasses import dataclass

from imagegate.core.errors import ModelNotAllowed


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: int
    key_id: int
    allowed_models: frozenset[str] | None = None  # None: every model

    def check_model(self, model_id: str) -> None:
        if self.allowed_models is not None and model_id not in self.allowed_models:
            raise ModelNotAllowed(f"This API key may not use the model '{model_id}'.", param="model")
