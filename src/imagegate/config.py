"""Configuration: one TOML file read once into typed, immutable settings.

This is the only module that reads the environment. `${VAR}` anywhere in a string value is replaced by
the environment variable's value (a missing variable is an error, named in the message).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from imagegate.core.routing import RoutingPolicy
from imagegate.fetch.policy import FetchSettings

CONFIG_ENV = "IMAGEGATE_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = "sqlite:///./imagegate.db"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    backend: str = "local"
    path: str = "./imagegate-data"
    public_base_url: str = "http://127.0.0.1:8000"
    output_retention: float = 86400.0  # seconds an output image stays at its URL (sync and async results)
    file_retention: float = 30 * 86400.0  # seconds an uploaded file (POST /v1/files) is kept


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_image_bytes: int = 50 * 1024 * 1024
    max_request_bytes: int = 16 * 50 * 1024 * 1024 + 50 * 1024 * 1024
    max_json_bytes: int = 64 * 1024 * 1024
    max_form_fields: int = 64
    max_field_bytes: int = 64 * 1024
    spool_memory_bytes: int = 1024 * 1024
    request_timeout: float = 600.0  # seconds a synchronous edit may take, upstream included
    header_timeout: float = 10.0  # seconds a client has to send a request's headers once it begins (or connects)
    body_timeout: float = 30.0  # seconds a request body may go without a byte before the answer is 408
    keep_alive: float = 75.0  # seconds an idle keep-alive connection stays open between requests


@dataclass(frozen=True, slots=True)
class ApiSettings:
    default_response_format: str = "url"  # for requests that name none; "b64_json" as OpenAI answers GPT Image
    default_model: str | None = None  # for requests that name no model

    def __post_init__(self) -> None:
        if self.default_response_format not in ("url", "b64_json"):
            raise ValueError("default_response_format must be 'url' or 'b64_json'")


@dataclass(frozen=True, slots=True)
class BillingSettings:
    hold_ttl: float = 1800.0  # seconds after which a synchronous request's hold is released by the sweeper
    sweep_interval: float = 30.0  # seconds between sweeps for stale holds, overdue and expired tasks


@dataclass(frozen=True, slots=True)
class TaskSettings:
    workers: int = 4  # async tasks run at once by each gateway process
    lease: float = 30.0  # seconds a claimed task stays with its worker without a heartbeat
    poll_interval: float = 1.0  # seconds an idle worker waits before looking for work again
    deadline: float = 900.0  # seconds from creation after which a task fails with `timeout`
    retention: float = 86400.0  # seconds a task and its output images stay available
    max_attempts: int = 3  # claims of one task (worker crashes included) before it fails


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    type: str
    models: tuple[str, ...]
    base_url: str = ""
    api_key: str = ""
    priority: int = 1
    weight: int = 1
    timeout: float = 600.0
    api_version: str = ""
    deployments: Mapping[str, str] = field(default_factory=dict)
    organization: str = ""
    project: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    providers: tuple[ProviderSettings, ...] = (
        ProviderSettings(name="local", type="local", models=("local-edit", "local-draw")),
    )
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_level: str = "info"


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"environment variable {name} is not set (used in the config file)")
            return env[name]
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


def _section(cls: Any, raw: Mapping[str, Any] | None, where: str) -> Any:
    raw = dict(raw or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {', '.join(unknown)}")
    for name, value in raw.items():
        if isinstance(value, list):
            raw[name] = tuple(value)
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc


def settings_from_mapping(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    raw = _expand(dict(raw), os.environ if env is None else env)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {
        "database": _section(DatabaseSettings, raw.get("database"), "database"),
        "storage": _section(StorageSettings, raw.get("storage"), "storage"),
        "fetch": _section(FetchSettings, raw.get("fetch"), "fetch"),
        "limits": _section(LimitSettings, raw.get("limits"), "limits"),
        "api": _section(ApiSettings, raw.get("api"), "api"),
        "billing": _section(BillingSettings, raw.get("billing"), "billing"),
        "tasks": _section(TaskSettings, raw.get("tasks"), "tasks"),
        "routing": _section(RoutingPolicy, raw.get("routing"), "routing"),
        "prices": dict(raw.get("prices", {})),
        "log_level": str(raw.get("log_level", "info")),
    }
    if "providers" in raw:
        providers = tuple(_section(ProviderSettings, p, f"providers.{p.get('name', i)}")
                          for i, p in enumerate(raw["providers"]))
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ConfigError("[[providers]]: names must be unique")
        kwargs["providers"] = providers
    limits = kwargs["limits"]
    if min(limits.header_timeout, limits.body_timeout, limits.keep_alive) <= 0:
        raise ConfigError("[limits]: header_timeout, body_timeout and keep_alive must be > 0")
    if kwargs["billing"].hold_ttl <= kwargs["limits"].request_timeout:
        raise ConfigError("[billing] hold_ttl must be longer than [limits] request_timeout, or holds of "
                          "requests still running would be released")
    if kwargs["tasks"].workers < 0 or kwargs["tasks"].lease <= 0 or kwargs["tasks"].max_attempts < 1:
        raise ConfigError("[tasks]: workers must be >= 0, lease > 0 and max_attempts >= 1")
    if kwargs["tasks"].retention <= kwargs["tasks"].deadline:
        raise ConfigError("[tasks]: retention must be longer than deadline")
    storage = kwargs["storage"]
    if storage.output_retention < kwargs["tasks"].retention or storage.file_retention <= 0:
        raise ConfigError("[storage]: output_retention must be at least [tasks] retention (or a task's images "
                          "would vanish before the task) and file_retention must be > 0")
    if kwargs["storage"].backend != "local":
        raise ConfigError(f"[storage] backend {kwargs['storage'].backend!r} is not supported; use 'local'")
    return Settings(**kwargs)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the config file named by `path` or $IMAGEGATE_CONFIG; the embedded defaults when neither is set."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return Settings()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return settings_from_mapping(raw)
