"""kmsync_kaltura - the Kaltura side of kmsync: an async client and parsers for Kaltura's raw shapes.

What ingest uses (docs/reference/kaltura-api.md §7):

* :class:`KalturaClient` / :class:`KalturaSettings` - KS handling, user-profile list since a
  watermark joined with ``user.list``, ``report.getTable`` 60013 pages per session, report 4021 CSV,
  ``pollsActivity`` poll answers from the reports microservice.
* :func:`parse_engagement_csv`, :func:`parse_poll_answers_csv`, :func:`iter_report_csv`,
  :func:`report_from_filename` - Kaltura report CSV files (BOM, header, per-row errors with line
  numbers while good rows go through).
* :func:`parse_engagement_table` - ``KalturaReportTable`` header/data strings.
* :func:`check_signature`, :func:`verify_signature`, :func:`parse_notification` - inbound Kaltura
  HTTP notifications (signature over secret + raw body, constant-time comparison).
* Models: :class:`UserProfile`, :class:`KalturaUser`, :class:`Attendee`, :class:`EngagementRow`
  (60013), :class:`EngagementCsvRow` (4021), :class:`PollAnswerRow` (assumed pollsActivity layout),
  :class:`HttpNotification`, :class:`AttendanceStatus`.
* Errors: :mod:`kmsync_kaltura.errors`.

These are Kaltura's shapes; kmsync's topic contracts are in ``kmsync_contracts``.
"""

from kmsync_kaltura.client import (
    AttendeePage,
    EngagementPage,
    KalturaClient,
    KalturaSettings,
    ObjectError,
    UserProfilePage,
)
from kmsync_kaltura.csv_reports import (
    ReportFileName,
    iter_report_csv,
    parse_engagement_csv,
    parse_poll_answers_csv,
    parse_report_csv,
    report_from_filename,
)
from kmsync_kaltura.errors import (
    CsvHeaderError,
    InvalidKSError,
    KalturaAPIError,
    KalturaError,
    KalturaRequestRejected,
    KalturaResponseError,
    KalturaTransportError,
    MissingKSError,
    NotificationParseError,
    ReportNotReadyError,
    ReportResultLimitError,
    SignatureError,
    StartSessionError,
)
from kmsync_kaltura.models import (
    AttendanceStatus,
    Attendee,
    EngagementCsvRow,
    EngagementRow,
    EventData,
    HttpNotification,
    KalturaUser,
    LoginData,
    PollAnswerRow,
    UserProfile,
    is_plausible_email,
)
from kmsync_kaltura.notifications import (
    HASH_ALGO_HEADER,
    SIGNATURE_HEADER,
    check_signature,
    compute_signature,
    parse_notification,
    verify_signature,
)
from kmsync_kaltura.report_table import parse_engagement_table, parse_table
from kmsync_kaltura.rows import Located, ParseResult, RowError

__all__ = [
    "HASH_ALGO_HEADER",
    "SIGNATURE_HEADER",
    "AttendanceStatus",
    "Attendee",
    "AttendeePage",
    "CsvHeaderError",
    "EngagementCsvRow",
    "EngagementPage",
    "EngagementRow",
    "EventData",
    "HttpNotification",
    "InvalidKSError",
    "KalturaAPIError",
    "KalturaClient",
    "KalturaError",
    "KalturaRequestRejected",
    "KalturaResponseError",
    "KalturaSettings",
    "KalturaTransportError",
    "KalturaUser",
    "Located",
    "LoginData",
    "MissingKSError",
    "NotificationParseError",
    "ObjectError",
    "ParseResult",
    "PollAnswerRow",
    "ReportFileName",
    "ReportNotReadyError",
    "ReportResultLimitError",
    "RowError",
    "SignatureError",
    "StartSessionError",
    "UserProfile",
    "UserProfilePage",
    "check_signature",
    "compute_signature",
    "is_plausible_email",
    "iter_report_csv",
    "parse_engagement_csv",
    "parse_engagement_table",
    "parse_notification",
    "parse_poll_answers_csv",
    "parse_report_csv",
    "parse_table",
    "report_from_filename",
    "verify_signature",
]
