"""kmsync's contracts: every topic record as a versioned pydantic model, the topic catalogue,
the seed document's vocabulary, and JSON codecs. Services import these; nobody re-declares them.
"""

from kmsync_contracts.base import ContractModel, Scalar, utc_now
from kmsync_contracts.codecs import ContractError, decode, decode_as, decode_model, encode
from kmsync_contracts.kaltura_records import (
    AttendanceStatus,
    AttendeeStatus,
    KalturaRecord,
    PollResponse,
    SessionEngagement,
    kaltura_key,
)
from kmsync_contracts.marketo_ops import (
    MARKETO_OPERATION_ADAPTER,
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    MarketoOperation,
    OperationKind,
    ProgramMemberData,
    ProgramMemberStatus,
)
from kmsync_contracts.outcomes import DeadLetter, IngestWatermark, RecordOutcome, SessionTimes
from kmsync_contracts.topics import ALL_TOPICS, TOPICS_BY_NAME, TopicSpec

__all__ = [
    "ALL_TOPICS",
    "MARKETO_OPERATION_ADAPTER",
    "TOPICS_BY_NAME",
    "AttendanceStatus",
    "AttendeeStatus",
    "ContractError",
    "ContractModel",
    "CustomActivity",
    "CustomObjectUpsert",
    "DeadLetter",
    "IngestWatermark",
    "KalturaRecord",
    "LeadUpsert",
    "MarketoOperation",
    "OperationKind",
    "PollResponse",
    "ProgramMemberData",
    "ProgramMemberStatus",
    "RecordOutcome",
    "Scalar",
    "SessionEngagement",
    "SessionTimes",
    "TopicSpec",
    "decode",
    "decode_as",
    "decode_model",
    "encode",
    "kaltura_key",
    "utc_now",
]
