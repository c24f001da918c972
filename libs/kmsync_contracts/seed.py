"""The seed document's vocabulary: channel statuses, custom object and custom activity schemas.

Source: docs/reference/seed.md ("Kaltura data sharing integration for Adobe
Marketo - How to set up Marketo"). Names, steps, data types and descriptions are the seed's; the
seed is the contract an admin follows when preparing a Marketo instance, so every service, the
sandbox preset and `kmsync marketo check` read these tables rather than re-declaring them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MarketoDataType = Literal["string", "text", "integer", "float", "link", "datetime", "email"]


@dataclass(frozen=True)
class ChannelStatus:
    """One progression status of the event program channel (seed: "Channel setup")."""

    name: str
    step: int
    success: bool


#: The nine statuses of the event channel, in the seed's order, with their steps.
CHANNEL_STATUSES: tuple[ChannelStatus, ...] = (
    ChannelStatus("Created", 10, False),
    ChannelStatus("Invited", 20, False),
    ChannelStatus("Registered", 30, True),
    ChannelStatus("Confirmed", 40, True),
    ChannelStatus("autoConfirmed", 40, True),
    ChannelStatus("Attended", 50, True),
    ChannelStatus("Participated", 60, True),
    ChannelStatus("Blocked", 70, False),
    ChannelStatus("Un-registered", 80, False),
)
STATUS_STEPS: dict[str, int] = {s.name: s.step for s in CHANNEL_STATUSES}

#: The granular labels the seed says Kaltura shows on Marketo ("List of statuses displayed on
#: Marketo"). They are not channel statuses; kmsync carries them as a lead-level detail.
GRANULAR_STATUS_LABELS: tuple[str, ...] = (
    "SSO login",
    "Invited by team member",
    "Invited by team member to register",
    "Registered",
    "Confirmed email",
    "Registered no confirmation required",
    "Pre-event visit",
    "During-event visit",
    "Blocked",
    "Un-registered",
)


@dataclass(frozen=True)
class FieldSpec:
    """A custom object or custom activity field as the seed lists it."""

    name: str
    data_type: MarketoDataType
    description: str


ENGAGEMENT_OBJECT_API_NAME = "kalturaUserSessionEngagement"
POLLS_OBJECT_API_NAME = "kalturaUserPolls_c"
ENGAGEMENT_ACTIVITY_API_NAME = "userSessionEngagement"
#: The primary field of both engagement schemas and of the polls object (seed: "(*Primary)").
PRIMARY_FIELD = "entry_id"

#: Dedupe fields of the two custom objects: the compound keys transform upserts by, the sandbox's
#: kaltura preset declares and `kmsync marketo check` expects. Declared here only.
#: docs/reference/seed.md ("Setup of custom objects") marks only entry_id
#: "(*Primary)"; a per-entry key alone would let two attendees of one entry overwrite each other, so
#: kmsync adds the person: the personId lead link for engagement, email for polls (that object has no
#: link field). docs/reference/marketo-api.md §8 (custom objects): ``dedupeFields`` is a list, more than one name is a
#: compound key (§8.1); every record synced with ``dedupeBy: dedupeFields`` carries all of them (§8.2);
#: they cannot be added or removed once the type is approved (§8.3); 1–3 per type (§2.2).
ENGAGEMENT_OBJECT_DEDUPE_FIELDS: tuple[str, ...] = (PRIMARY_FIELD, "personId")
POLLS_OBJECT_DEDUPE_FIELDS: tuple[str, ...] = (PRIMARY_FIELD, "email")

MAX_POLLS_PER_SESSION = 10
POLL_ANSWER_MAX_CHARS = 1500
POLL_QUESTION_MAX_CHARS = 3600

_RATE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("no_live_engagement_rate", "float",
              "Percentage of viewing time that the tab is not in focus, player is on mute"),
    FieldSpec("low_live_engagement_rate", "float",
              "Percentage of viewing time that the tab is in focus, player is on mute"),
    FieldSpec("fair_live_engagement_rate", "float",
              "Percentage of viewing time that the tab is not in focus, sound is on"),
    FieldSpec("good_live_engagement_rate", "float",
              "Percentage of viewing time that the tab is in focus, sound is on"),
    FieldSpec("high_live_engagement_rate", "float",
              "Percentage of viewing time that the tab is in focus, player is in full screen mode, "
              "sound is on"),
)
_REACTION_FIELDS: tuple[FieldSpec, ...] = tuple(
    FieldSpec(f"{r}_clicked_count", "integer", f"Amount of times the user clicked on {r} reaction")
    for r in ("clap", "heart", "think", "wow", "smile")
)
_VIEWING_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("plays", "integer", "Number of plays"),
    FieldSpec("vod_minutes_viewed", "float", "Amount of minutes VOD content was consumed"),
    FieldSpec("live_minutes_viewed", "float", "Amount of minutes live content was consumed"),
    FieldSpec("total_vod_completion_rate", "float", "VOD content completion rate"),
)
_CHANNEL_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("channel_id", "integer", "The ID of the channel the content was consumed from"),
    FieldSpec("channel_name", "string", "The name of the channel the content was consumed from"),
)

#: Custom object kalturaUserSessionEngagement: all 30 fields of the seed, in its order.
ENGAGEMENT_OBJECT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("entry_id", "string", "The ID of the Kaltura entry which was watched"),
    FieldSpec("entry_name", "string", "The name of the Kaltura entry which was watched"),
    FieldSpec("personId", "link", "The ID for linking the lead to any activity they have performed"),
    FieldSpec("email", "string", "The email of the user who attended the session"),
    FieldSpec("user", "string", "Kaltura User ID"),
    *_CHANNEL_FIELDS,
    *_VIEWING_FIELDS,
    *_RATE_FIELDS,
    *_REACTION_FIELDS,
    FieldSpec("answered_polls", "integer", "The number of polls the user responded"),
    FieldSpec("messages_sent_group", "integer", "The number of messages the user sent in group chat"),
    FieldSpec("qna_threads", "integer", "The number of threads of the user"),
    FieldSpec("combined_live_engaged_users_play_time_ratio", "float",
              "A number which represents the viewing engagement of the attendee"),
    FieldSpec("add_to_calendar", "integer", "The number of times the user clicked add to calendar"),
    FieldSpec("mic_on", "float", "Total time mic is on"),
    FieldSpec("cam_on", "float", "Total time camera is on"),
    FieldSpec("total_reactions_activity", "integer",
              "Amount of times the user clicked on any type of reaction"),
    FieldSpec("raise_hand", "integer", "The number of times the user raised hand in this session"),
)

#: Custom activity userSessionEngagement: the seed's 20 fields, entry_id is the primary attribute.
ENGAGEMENT_ACTIVITY_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("entry_id", "string", "The ID of the Kaltura entry which was watched"),
    FieldSpec("entry_name", "string", "The name of the Kaltura entry which was watched"),
    FieldSpec("email", "string", "The email of the user who attended the session"),
    FieldSpec("user", "string", "Kaltura User ID"),
    *_CHANNEL_FIELDS,
    *_VIEWING_FIELDS,
    *_RATE_FIELDS,
    *_REACTION_FIELDS,
)


def poll_field_names(slot: int) -> tuple[str, str, str]:
    """The (type, answer, question) field names of poll slot 1..10 in kalturaUserPolls_c."""
    if not 1 <= slot <= MAX_POLLS_PER_SESSION:
        raise ValueError(f"poll slot must be 1..{MAX_POLLS_PER_SESSION}, got {slot}")
    return (f"poll_{slot}_type", f"poll_{slot}_answer", f"poll_{slot}_question")


#: Custom object kalturaUserPolls_c: entry_id, email, user, then poll_1..poll_10 × type/answer/question.
POLLS_OBJECT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("entry_id", "string", "The ID of the Kaltura entry which was watched"),
    FieldSpec("email", "string", "The email of the user who attended the session"),
    FieldSpec("user", "string", "Kaltura User ID"),
    *(
        spec
        for slot in range(1, MAX_POLLS_PER_SESSION + 1)
        for spec in (
            FieldSpec(poll_field_names(slot)[0], "string",
                      "The visual type of this poll, i.e., rating scale, crowd vote, etc."),
            FieldSpec(poll_field_names(slot)[1], "text",
                      f"User-submitted answer to the poll. Up to {POLL_ANSWER_MAX_CHARS} characters."),
            FieldSpec(poll_field_names(slot)[2], "text",
                      f"Client-determined poll question asked to the audience. Up to "
                      f"{POLL_QUESTION_MAX_CHARS} characters."),
        )
    ),
)

#: Engagement metric field names shared by the object and the activity (everything but identity).
ENGAGEMENT_METRIC_FIELDS: tuple[str, ...] = tuple(
    f.name for f in ENGAGEMENT_OBJECT_FIELDS
    if f.name not in {"entry_id", "entry_name", "personId", "email", "user", "channel_id", "channel_name"}
)
RATE_FIELD_NAMES: tuple[str, ...] = (
    "total_vod_completion_rate",
    *(f.name for f in _RATE_FIELDS),
)
