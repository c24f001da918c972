"""Process settings from environment variables (prefix KMSYNC_), shared by every service.

Each service extends CommonSettings with its own fields in its own package. Tenant data (events,
Marketo instances, credentials by reference) lives in the tenants file, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kmsync_config.references import SecretRefSetting
from kmsync_config.tenants import ConfigError, SecretRef
from kmsync_contracts.codecs import describe_validation_error


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KMSYNC_", extra="forbid", frozen=True)

    #: Kafka bootstrap servers, comma-separated host:port.
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Prefix for every topic name (lets several pipelines or tests share one broker).
    topic_prefix: str = ""
    tenants_file: Path = Path("tenants.yaml")
    #: Port of the service's HTTP endpoint (/metrics, /healthz, /readyz; ingest's API too).
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    #: Where the key of the keyed email hash in logs lives (kmsync_common.hash_email), by reference:
    #: {"env": "NAME"} or {"file": "/run/secrets/email-hash-key"}. The same key in every service makes
    #: a person's hash the same everywhere; unset, each process uses a random key (with a warning).
    email_hash_secret: SecretRefSetting = None
    #: The cyclic garbage collector in the services (kmsync_common.collector): middle collections before a full
    #: one, Python's third threshold (Python's own: 10).
    gc_full_threshold: int = Field(default=1_000, ge=1)

    @field_validator("email_hash_secret")
    @classmethod
    def _key_resolves(cls, v: SecretRef | None) -> SecretRef | None:
        if v is not None:
            key = v.resolve().get_secret_value()  # ValueError says where it was looked for
            if len(key.encode()) < 16:
                raise ValueError(f"the key in {v.describe()} is shorter than 16 bytes; use 32 random bytes")
        return v


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment plus overrides; ConfigError lists every problem."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("environment (KMSYNC_*)", describe_validation_error(exc)) from None
