"""``--preset kaltura``: what the Kaltura setup guide tells a Marketo admin to create.

Source: shared/seed/kaltura-marketo-setup.txt ("Channel setup", "Program setup", "Setup of custom
objects", "Setup of custom activities"). Field API names are spelled exactly as the guide spells them.
"""

from __future__ import annotations

from kmsync_contracts.granular import GRANULAR_STATUS_DISPLAY_NAME, GRANULAR_STATUS_FIELD
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_DEDUPE_FIELDS, POLLS_OBJECT_DEDUPE_FIELDS

from .model import (
    ActivityType,
    ActivityTypeVersion,
    Attribute,
    Channel,
    COField,
    COType,
    COVersion,
    Program,
    ProgressionStatus,
)

CHANNEL_ID = 1
CHANNEL_NAME = "Kaltura Virtual Event"
PROGRAM_ID = 1001
PROGRAM_NAME = "Kaltura Virtual Event Program"
ACTIVITY_TYPE_ID = 100001
ACTIVITY_TYPE_API_NAME = "userSessionEngagement"
ENGAGEMENT_CO = "kalturaUserSessionEngagement"
POLLS_CO = "kalturaUserPolls_c"

# Status, step, success? — the guide's channel table, in its order.
STATUSES: list[tuple[str, int, bool]] = [
    ("Created", 10, False),
    ("Invited", 20, False),
    ("Registered", 30, True),
    ("Confirmed", 40, True),
    ("autoConfirmed", 40, True),
    ("Attended", 50, True),
    ("Participated", 60, True),
    ("Blocked", 70, False),
    ("Un-registered", 80, False),
]

# Custom activity "userSessionEngagement": entry_id is the primary attribute.
ACTIVITY_ATTRIBUTES: list[tuple[str, str, str]] = [
    ("entry_name", "string", "The name of the Kaltura entry which was watched"),
    ("email", "string", "The email of the user who attended the session"),
    ("user", "string", "Kaltura User ID"),
    ("channel_id", "integer", "The id of channel the content was consumed from"),
    ("channel_name", "string", "The name of the channel the content was consumed from"),
    ("plays", "integer", "Number of plays"),
    ("vod_minutes_viewed", "float", "Amount of minutes vod content was consumed"),
    ("live_minutes_viewed", "float", "Amount of minutes live content was consumed"),
    ("total_vod_completion_rate", "float", "VOD content completion rate"),
    ("no_live_engagement_rate", "float", "Percentage of viewing time that the tab is not in focus, player is on mute"),
    ("low_live_engagement_rate", "float", "Percentage of viewing time that the tab is in focus, player is on mute"),
    ("fair_live_engagement_rate", "float", "Percentage of viewing time that the tab is not in focus, sound is on"),
    ("good_live_engagement_rate", "float", "Percentage of viewing time that the tab is in focus, sound is on"),
    ("high_live_engagement_rate", "float",
     "Percentage of viewing time that the tab is in focus, player is in full screen mode, sound is on"),
    ("clap_clicked_count", "integer", "Amount of times the user clicked on clap reaction"),
    ("heart_clicked_count", "integer", "Amount of times the user clicked on heart reaction"),
    ("think_clicked_count", "integer", "Amount of times the user clicked on think reaction"),
    ("wow_clicked_count", "integer", "Amount of times the user clicked on wow reaction"),
    ("smile_clicked_count", "integer", "Amount of times the user clicked on smile reaction"),
]

# Custom object "kalturaUserSessionEngagement" (after entry_id and the personId link).
ENGAGEMENT_FIELDS: list[tuple[str, str]] = [
    ("entry_name", "string"),
    ("email", "string"),
    ("user", "string"),
    ("channel_id", "integer"),
    ("channel_name", "string"),
    ("plays", "integer"),
    ("vod_minutes_viewed", "float"),
    ("live_minutes_viewed", "float"),
    ("total_vod_completion_rate", "float"),
    ("no_live_engagement_rate", "float"),
    ("low_live_engagement_rate", "float"),
    ("fair_live_engagement_rate", "float"),
    ("good_live_engagement_rate", "float"),
    ("high_live_engagement_rate", "float"),
    ("clap_clicked_count", "integer"),
    ("heart_clicked_count", "integer"),
    ("think_clicked_count", "integer"),
    ("wow_clicked_count", "integer"),
    ("smile_clicked_count", "integer"),
    ("answered_polls", "integer"),
    ("messages_sent_group", "integer"),
    ("qna_threads", "integer"),
    ("combined_live_engaged_users_play_time_ratio", "float"),
    ("add_to_calendar", "integer"),
    ("mic_on", "float"),
    ("cam_on", "float"),
    ("total_reactions_activity", "integer"),
    ("raise_hand", "integer"),
]

POLL_COUNT = 10  # "Kaltura supports up to 10 polls per session (30 data points)."


def channel(now: float) -> Channel:
    return Channel(
        id=CHANNEL_ID,
        name=CHANNEL_NAME,
        applicable_program_type="event",
        statuses=[ProgressionStatus(name=n, step=s, success=ok) for n, s, ok in STATUSES],
        created=now,
        updated=now,
    )


def program(now: float) -> Program:
    return Program(
        id=PROGRAM_ID,
        name=PROGRAM_NAME,
        type="Event",
        channel=CHANNEL_NAME,
        description="Kaltura Virtual Events program (sandbox preset)",
        created=now,
        updated=now,
    )


def activity_type(now: float) -> ActivityType:
    version = ActivityTypeVersion(
        name="userSessionEngagement",
        description="Kaltura Virtual Events user session engagement",
        trigger_name="Has Kaltura session engagement",
        filter_name="Had Kaltura session engagement",
        primary=Attribute(
            api_name="entry_id",
            name="entry_id",
            data_type="string",
            description="The ID of the Kaltura entry which was watched",
            is_primary=True,
        ),
        attributes=[Attribute(api_name=n, name=n, data_type=t, description=d) for n, t, d in ACTIVITY_ATTRIBUTES],
    )
    return ActivityType(id=ACTIVITY_TYPE_ID, api_name=ACTIVITY_TYPE_API_NAME, created=now, updated=now,
                        approved=version)


def _text(name: str) -> COField:
    return COField(name=name, display_name=name, data_type="text")


def _co_field(name: str, data_type: str, dedupe: tuple[str, ...],
              related_to: tuple[str, str] | None = None) -> COField:
    """A custom object field; one of the object's ``dedupe`` fields is a key, so not updateable."""
    is_key = name in dedupe
    return COField(name=name, display_name=name, data_type=data_type, is_dedupe=is_key, related_to=related_to,
                   updateable=not is_key)


def engagement_co(now: float) -> COType:
    # The guide marks entry_id "(*Primary)"; the dedupe key is the contract's compound one,
    # entry_id + personId (the lead link): see kmsync_contracts.seed.ENGAGEMENT_OBJECT_DEDUPE_FIELDS.
    dedupe = ENGAGEMENT_OBJECT_DEDUPE_FIELDS
    fields = [
        _co_field("entry_id", "string", dedupe),
        _co_field("personId", "link", dedupe, related_to=("Lead", "id")),
        *[_co_field(n, t, dedupe) for n, t in ENGAGEMENT_FIELDS],
    ]
    version = COVersion(display_name="Kaltura User Session Engagement",
                        plural_name="Kaltura User Session Engagements",
                        description="Kaltura Virtual Events engagement per user and entry",
                        show_in_lead_detail=True, fields=fields)
    return COType(api_name=ENGAGEMENT_CO, created=now, updated=now, approved=version)


def polls_co(now: float) -> COType:
    # The guide lists entry_id (primary), email, user and poll_N_{type,answer,question}; no link field.
    # Dedupe key: entry_id + email (both from the guide): kmsync_contracts.seed.POLLS_OBJECT_DEDUPE_FIELDS.
    dedupe = POLLS_OBJECT_DEDUPE_FIELDS
    fields = [
        _co_field("entry_id", "string", dedupe),
        _co_field("email", "string", dedupe),
        _co_field("user", "string", dedupe),
    ]
    for i in range(1, POLL_COUNT + 1):
        fields.append(COField(name=f"poll_{i}_type", display_name=f"poll_{i}_type", data_type="string"))
        fields.append(_text(f"poll_{i}_answer"))
        fields.append(_text(f"poll_{i}_question"))
    version = COVersion(display_name="Kaltura User Polls", plural_name="Kaltura User Polls",
                        description="Kaltura Virtual Events poll answers per user and entry",
                        show_in_lead_detail=True, fields=fields)
    return COType(api_name=POLLS_CO, created=now, updated=now, approved=version)


#: Custom program member fields (name, display name, type, length): the granular label's
#: (docs/design/granular-statuses.md §1.1; a custom string shows length 255, docs/reference/marketo-api.md §13.3).
MEMBER_FIELDS: tuple[tuple[str, str, str, int], ...] = (
    (GRANULAR_STATUS_FIELD, GRANULAR_STATUS_DISPLAY_NAME, "string", 255),
)
