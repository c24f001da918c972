"""kmsync_marketo: the Marketo Engage client (auth, limits, error rules, REST, Bulk, setup check).

See README.md beside this file for the public API and the limiter design.
"""

from kmsync_common.clock import Clock, FakeClock, SystemClock
from kmsync_marketo.bulk import BulkImporter, BulkResult
from kmsync_marketo.client import ActivityRecord, LeadSyncResult, MarketoClient
from kmsync_marketo.errors import (
    ERROR_TABLE,
    ErrorClass,
    MarketoApiError,
    MarketoAuthError,
    MarketoError,
    MarketoHttpError,
    MarketoProtocolError,
    classify,
)
from kmsync_marketo.limiter import InstanceLimiter, LimiterStats, next_quota_reset
from kmsync_marketo.outcomes import Outcome
from kmsync_marketo.settings import BulkSettings, LimiterSettings, MarketoSettings, RetrySettings

__all__ = [
    "ERROR_TABLE",
    "ActivityRecord",
    "BulkImporter",
    "BulkResult",
    "BulkSettings",
    "Clock",
    "ErrorClass",
    "FakeClock",
    "InstanceLimiter",
    "LeadSyncResult",
    "LimiterSettings",
    "LimiterStats",
    "MarketoApiError",
    "MarketoAuthError",
    "MarketoClient",
    "MarketoError",
    "MarketoHttpError",
    "MarketoProtocolError",
    "MarketoSettings",
    "Outcome",
    "RetrySettings",
    "SystemClock",
    "classify",
    "next_quota_reset",
]
