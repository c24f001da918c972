"""Marketo's paths and hard limits, stated once (docs/reference/marketo-api.md §1, §2, §5–9).

Nothing else in kmsync spells a Marketo path or limit; services import these names.
"""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

# --- limits, docs/reference/marketo-api.md §2.1 / §2.2 ---
#: Records per Lead DB / custom object / activity / program member call.
BATCH_MAX: Final = 300
#: Standard REST body limit (HTTP 413 above it).
REST_BODY_MAX_BYTES: Final = 1_000_000
#: Bulk import file limit (HTTP 413 above it).
BULK_FILE_MAX_BYTES: Final = 10_000_000
#: GET URI limit (HTTP 414 above it); longer queries go as POST with ?_method=GET.
URI_MAX_BYTES: Final = 8_000
#: Rolling rate window of the instance: 100 calls in any 20 s.
RATE_LIMIT_CALLS: Final = 100
RATE_WINDOW_SECONDS: Final = 20.0
#: Calls executing at once on the instance.
CONCURRENCY_LIMIT: Final = 10
#: Adobe's advice for one integration (§2.1 "Adobe's advice").
RECOMMENDED_CONCURRENCY: Final = 5
#: Typical daily quota; subscriptions have at least 10,000 and can buy more (§2.1, §11).
DEFAULT_DAILY_QUOTA: Final = 50_000
MIN_DAILY_QUOTA: Final = 10_000
#: The daily quota resets at 12:00 AM US Central (§2.1, §10.5).
QUOTA_RESET_TZ: Final = ZoneInfo("America/Chicago")
#: Bulk import queue: 2 running, 10 queued including the running ones (§2.2, §9.1).
BULK_IMPORT_RUNNING_MAX: Final = 2
BULK_IMPORT_QUEUED_MAX: Final = 10
#: Custom activity types per instance; secondary attributes per type (§7.1).
CUSTOM_ACTIVITY_TYPES_MAX: Final = 10
CUSTOM_ACTIVITY_ATTRIBUTES_MAX: Final = 20
#: Asset API page size (§2.1).
ASSET_PAGE_MAX: Final = 200
#: Server-side timeouts are up to 120 s (CO sync); client timeouts must exceed them (§10.4).
DEFAULT_HTTP_TIMEOUT_SECONDS: Final = 300.0
#: A brand-new token lives 3600 s (§1.2).
TOKEN_LIFETIME_SECONDS: Final = 3600

# --- paths, docs/reference/marketo-api.md §1, §5–9 ---
IDENTITY_TOKEN: Final = "/identity/oauth/token"

LEADS: Final = "/rest/v1/leads.json"
LEADS_DESCRIBE: Final = "/rest/v1/leads/describe.json"
LEADS_DESCRIBE2: Final = "/rest/v1/leads/describe2.json"
CAMPAIGNS: Final = "/rest/v1/campaigns.json"
USAGE_TODAY: Final = "/rest/v1/stats/usage.json"
ERRORS_TODAY: Final = "/rest/v1/stats/errors.json"


def program_member_status(program_id: int) -> str:
    return f"/rest/v1/programs/{int(program_id)}/members/status.json"


def program_members(program_id: int) -> str:
    """Get Program Members (§6.3)."""
    return f"/rest/v1/programs/{int(program_id)}/members.json"


PROGRAM_MEMBERS_DESCRIBE: Final = "/rest/v1/programs/members/describe.json"
#: Get / Create program member custom fields (§13.2, §13.3; Read-Write Schema Custom Field).
PROGRAM_MEMBER_FIELDS: Final = "/rest/v1/programs/members/schema/fields.json"


def program_member_data(program_id: int) -> str:
    """Sync Program Member Data (§13.4): the Get Program Members path, POSTed."""
    return program_members(program_id)

ACTIVITY_TYPES: Final = "/rest/v1/activities/types.json"
CUSTOM_ACTIVITIES: Final = "/rest/v1/activities/external.json"
CUSTOM_ACTIVITY_TYPES: Final = "/rest/v1/activities/external/types.json"
CUSTOM_ACTIVITY_TYPE_CREATE: Final = "/rest/v1/activities/external/type.json"
#: Get Lead Activities (read side): a paging token for a start time, then pages of activities.
ACTIVITIES_PAGING_TOKEN: Final = "/rest/v1/activities/pagingtoken.json"
ACTIVITIES: Final = "/rest/v1/activities.json"
#: Lead ids per Get Lead Activities call (Marketo's reference for the endpoint: up to 30 ``leadIds``)
#: and activity type ids (up to 10 ``activityTypeIds``).
ACTIVITIES_LEAD_IDS_MAX: Final = 30
ACTIVITIES_TYPE_IDS_MAX: Final = 10


def custom_activity_type_describe(api_name: str) -> str:
    return f"/rest/v1/activities/external/type/{api_name}/describe.json"


def custom_activity_type_attributes_create(api_name: str) -> str:
    return f"/rest/v1/activities/external/type/{api_name}/attributes/create.json"


def custom_activity_type_approve(api_name: str) -> str:
    return f"/rest/v1/activities/external/type/{api_name}/approve.json"


CUSTOM_OBJECTS: Final = "/rest/v1/customobjects.json"
CUSTOM_OBJECT_SCHEMA: Final = "/rest/v1/customobjects/schema.json"


def custom_object_sync(api_name: str) -> str:
    return f"/rest/v1/customobjects/{api_name}.json"


def custom_object_describe(api_name: str) -> str:
    return f"/rest/v1/customobjects/{api_name}/describe.json"


def custom_object_schema_describe(api_name: str) -> str:
    return f"/rest/v1/customobjects/schema/{api_name}/describe.json"


def custom_object_schema_add_field(api_name: str) -> str:
    return f"/rest/v1/customobjects/schema/{api_name}/addField.json"


def custom_object_schema_approve(api_name: str) -> str:
    return f"/rest/v1/customobjects/schema/{api_name}/approve.json"


CHANNELS: Final = "/rest/asset/v1/channels.json"
CHANNEL_BY_NAME: Final = "/rest/asset/v1/channel/byName.json"
PROGRAMS: Final = "/rest/asset/v1/programs.json"


def program(program_id: int) -> str:
    return f"/rest/asset/v1/program/{int(program_id)}.json"


# --- bulk import, docs/reference/marketo-api.md §9.2 (no /rest prefix) ---
BULK_LEADS_IMPORT: Final = "/bulk/v1/leads.json"


def bulk_leads_status(batch_id: int) -> str:
    return f"/bulk/v1/leads/batch/{int(batch_id)}.json"


def bulk_leads_failures(batch_id: int) -> str:
    return f"/bulk/v1/leads/batch/{int(batch_id)}/failures.json"


def bulk_leads_warnings(batch_id: int) -> str:
    return f"/bulk/v1/leads/batch/{int(batch_id)}/warnings.json"


def bulk_co_import(api_name: str) -> str:
    return f"/bulk/v1/customobjects/{api_name}/import.json"


def bulk_co_status(api_name: str, batch_id: int) -> str:
    return f"/bulk/v1/customobjects/{api_name}/import/{int(batch_id)}/status.json"


def bulk_co_failures(api_name: str, batch_id: int) -> str:
    return f"/bulk/v1/customobjects/{api_name}/import/{int(batch_id)}/failures.json"


def bulk_co_warnings(api_name: str, batch_id: int) -> str:
    return f"/bulk/v1/customobjects/{api_name}/import/{int(batch_id)}/warnings.json"


def bulk_pm_import(program_id: int) -> str:
    return f"/bulk/v1/program/{int(program_id)}/members/import.json"


def bulk_pm_status(batch_id: int) -> str:
    return f"/bulk/v1/program/members/import/{int(batch_id)}/status.json"


def bulk_pm_failures(batch_id: int) -> str:
    return f"/bulk/v1/program/members/import/{int(batch_id)}/failures.json"


def bulk_pm_warnings(batch_id: int) -> str:
    return f"/bulk/v1/program/members/import/{int(batch_id)}/warnings.json"


def base_url(endpoint: str) -> str:
    """The instance base from the admin's "REST endpoint": https, no trailing /rest or /identity, no
    trailing slash (double slashes are deprecated, §1.1)."""
    url = endpoint.strip().rstrip("/")
    for suffix in ("/rest", "/identity"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url.rstrip("/")


# --- the call that wrote an operation (kmsync trace), docs/reference/marketo-api.md §5.1, §6.2, §7.1, §8.2, §9.2 ---
#: The write call behind each kind of kmsync operation, by the API that carried it ("rest" or "bulk"),
#: with Marketo's own placeholders for the program and the object.
WRITE_ENDPOINTS: Final[dict[tuple[str, str], str]] = {
    ("lead_upsert", "rest"): f"POST {LEADS}",
    ("lead_upsert", "bulk"): f"POST {BULK_LEADS_IMPORT}",
    ("program_member_status", "rest"): "POST /rest/v1/programs/{programId}/members/status.json",
    ("program_member_status", "bulk"): "POST /bulk/v1/program/{programId}/members/import.json",
    ("program_member_data", "rest"): "POST /rest/v1/programs/{programId}/members.json",
    ("custom_object_upsert", "rest"): "POST /rest/v1/customobjects/{apiName}.json",
    ("custom_object_upsert", "bulk"): "POST /bulk/v1/customobjects/{apiName}/import.json",
    ("custom_activity", "rest"): f"POST {CUSTOM_ACTIVITIES}",
}


def write_endpoint(kind: str, api: str) -> str:
    """The Marketo call that writes an operation of ``kind`` over ``api`` (e.g. "POST /rest/v1/leads.json")."""
    return WRITE_ENDPOINTS.get((kind, api), f"{api} {kind}")
