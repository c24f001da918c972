"""One vocabulary of kmsync's own reason codes, shared by every service and every dead-letter topic.

A `reason_code` on `RecordOutcome` or `DeadLetter` is either Marketo's own code (a number such as
"1003", passed through as Marketo gave it), ``http_<status>`` when Marketo answered with an HTTP
error status instead of a JSON body (``kmsync_marketo.errors.failure_of`` builds it), or one of
these. kmsync's codes all start with ``kmsync.`` so they can never be confused with Marketo's,
whichever topic (ingest.dlq.v1, transform.dlq.v1, transform.decisions.v1, marketo.dlq.v1,
marketo.results.v1) an operator reads.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    # --- ingest: what Kaltura sent could not be read
    BAD_ROW = "kmsync.bad_row"
    """A report row (pulled or uploaded) fails validation; the line number and problems are in the reason."""
    INVALID_PROFILE = "kmsync.invalid_profile"
    """A user profile from userProfile.list fails validation."""

    # --- transform: a Kaltura record that cannot become a Marketo operation
    UNDECODABLE = "kmsync.undecodable"
    """An input record is not a valid contract record (JSON or schema)."""
    UNUSABLE_EMAIL = "kmsync.unusable_email"
    """The person's email is missing or not an address Marketo accepts."""
    EVENT_NOT_CONFIGURED = "kmsync.event_not_configured"
    """No tenants-file entry maps this partner and virtual event to a Marketo program."""
    TOO_MANY_POLLS = "kmsync.too_many_polls"
    """A session has more polls than the custom object's poll slots."""
    FORWARD_ONLY_SKIP = "kmsync.forward_only_skip"
    """A status lower than the member already has: not written (transform.decisions.v1, from/to status)."""
    POLL_MOVED = "kmsync.poll_moved"
    """A known poll arrived with another position in its session: its answer moved slot (transform.decisions.v1)."""
    ACTIVITY_ONCE = "kmsync.activity_once"
    """Another final snapshot of a session whose custom activity was already emitted: only the engagement object
    is updated, the activity (insert-only, once per session and person) keeps the first figures
    (transform.decisions.v1)."""
    SCHEDULE_UNKNOWN = "kmsync.schedule_unknown"
    """An attended status of an event whose start is unknown: no Pre-/During-event visit label is written
    (transform.decisions.v1 ``label_undecided``; give the event a schedule, docs/configuration.md)."""

    # --- sink: kmsync's decisions about an operation
    CONTRACT = "kmsync.contract"
    """An operation on marketo.ops.v1 is not a valid contract record."""
    ALREADY_WRITTEN = "kmsync.already_written"
    """The same operation (same op id) was already written; not sent again."""
    SUPERSEDED = "kmsync.superseded"
    """A custom object upsert of one lane (live or backfill) that transform emitted before an upsert of the same
    record the other lane has already written: not sent, so an older value never overwrites a newer one."""
    VERIFIED_WRITTEN = "kmsync.verified_written"
    """A custom activity found in the lead's activity log after an uncertain write: not sent again."""
    UNVERIFIED = "kmsync.unverified"
    """A custom activity that may be in Marketo and could not be verified."""
    LEAD_UNRESOLVED = "kmsync.lead_unresolved"
    """The lead an operation needs could not be found or created."""
    UNKNOWN_ACTIVITY_TYPE = "kmsync.unknown_activity_type"
    """The custom activity type is not defined in the Marketo instance."""
    INSTANCE_UNKNOWN = "kmsync.instance_unknown"
    """The operation names a Munchkin id that no tenants-file instance has."""
    INSTANCE_CONFIG = "kmsync.instance_config"
    """The instance's configuration is unusable (e.g. a missing secret)."""
    AUTH_REFUSED = "kmsync.auth_refused"
    """Marketo refused the client id and secret."""
    CLIENT_ERROR = "kmsync.client_error"
    """The Marketo client raised an error kmsync did not expect (retried)."""
    INTERNAL_ERROR = "kmsync.internal_error"
    """A bug in kmsync while handling this operation."""
    STOPPING = "kmsync.stopping"
    """The sink stopped before this operation's intent was recorded (replayed by the next owner)."""
    TRUNCATED = "kmsync.truncated"
    """Written, with a value cut to the Marketo field's length (the reason names the field)."""
    LEAD_FIELD_OMITTED = "kmsync.lead_field_omitted"
    """A lead written without a mapped field the instance lacks or the API may not write (the reason names it)."""
    COMPANY_DROPPED = "kmsync.company_dropped"
    """A lead Marketo refused with 1021 for its company, written again without it (the reason names the field)."""
    SCHEMA_MISSING = "kmsync.schema_missing"
    """None of the operation's fields exist in the instance."""
    SCHEMA_REFUSED = "kmsync.schema_refused"
    """The instance's schema makes the write unsafe (e.g. the dedupe field is missing)."""
    SCHEMA_UNREAD = "kmsync.schema_unread"
    """The instance's schema could not be read."""

    # --- the Marketo client: answers that carry no Marketo code
    PROTOCOL = "kmsync.protocol"
    """Marketo's answer could not be understood (not JSON, or not the documented shape)."""
    MISSING_RESULT = "kmsync.missing_result"
    """Marketo answered the call without a result for this record."""
    BULK_UNMATCHED = "kmsync.bulk_unmatched"
    """A bulk import's failure file row could not be matched to a record."""
    BULK_FAILED = "kmsync.bulk_failed"
    """A bulk import failed as a whole."""
    ROW_TOO_LARGE = "kmsync.row_too_large"
    """A record's CSV row is larger than a bulk import file may be."""
    UNKNOWN = "kmsync.unknown"
    """A failure that carried no code at all (kept rather than dropped; report it as a bug)."""


def is_kmsync_code(code: str) -> bool:
    """True for one of kmsync's own codes, False for a code Marketo returned."""
    return code.startswith("kmsync.")
