"""kmsync configuration: the tenants file and process settings, validated all at once."""

from kmsync_config.settings import CommonSettings, load_settings
from kmsync_config.tenants import (
    ConfigError,
    EventConfig,
    KalturaPartner,
    MarketoInstance,
    Outputs,
    SecretRef,
    SessionConfig,
    TenantsConfig,
    load_tenants,
    parse_tenants,
)

__all__ = [
    "CommonSettings",
    "ConfigError",
    "EventConfig",
    "KalturaPartner",
    "MarketoInstance",
    "Outputs",
    "SecretRef",
    "SessionConfig",
    "TenantsConfig",
    "load_settings",
    "load_tenants",
    "parse_tenants",
]
