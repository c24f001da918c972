"""Marketo's REST, Asset and Bulk paths mapped to handlers (docs/reference/marketo-api.md §1.1, §12.1)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import api_activities as act
from . import api_bulk as bulk
from . import api_customobjects as co
from . import api_leads as leads
from . import api_member_fields as member_fields
from . import api_programs as prog
from . import api_stats as stats
from .call import Call

Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str]
    asset: bool

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


def _compile(template: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\{[A-Za-z]+\})", template):
        if part.startswith("{") and part.endswith("}"):
            out += f"(?P<{part[1:-1]}>[^/]+?)"
        else:
            out += re.escape(part)
    return re.compile(f"^{out}$")


_TABLE: list[tuple[str, str, Handler]] = [
    # Leads (§5)
    ("POST", "/rest/v1/leads.json", leads.sync_leads),
    ("GET", "/rest/v1/leads.json", leads.get_leads),
    ("GET", "/rest/v1/lead/{id}.json", leads.get_lead_by_id),
    ("POST", "/rest/v1/leads/delete.json", leads.delete_leads),
    ("GET", "/rest/v1/leads/describe.json", leads.describe),
    ("GET", "/rest/v1/leads/describe2.json", leads.describe2),
    ("GET", "/rest/v1/leads/schema/fields.json", leads.schema_fields),
    ("POST", "/rest/v1/leads/schema/fields.json", leads.create_schema_fields),
    ("GET", "/rest/v1/leads/schema/fields/{fieldApiName}.json", leads.schema_field),
    ("GET", "/rest/v1/leads/programs/{programId}.json", prog.leads_by_program),
    ("POST", "/rest/v1/leads/programs/{programId}/status.json", prog.change_lead_program_status),
    ("GET", "/rest/v1/leads/{id}/programMembership.json", prog.lead_program_membership),
    # Program members (§6.2, §6.3)
    ("POST", "/rest/v1/programs/{programId}/members/status.json", prog.sync_member_status),
    ("POST", "/rest/v1/programs/{programId}/members/delete.json", prog.delete_members),
    ("GET", "/rest/v1/programs/members/describe.json", member_fields.describe_members),
    ("GET", "/rest/v1/program/members/describe.json", member_fields.describe_members),
    ("GET", "/rest/v1/programs/members/schema/fields.json", member_fields.list_member_fields),
    ("POST", "/rest/v1/programs/members/schema/fields.json", member_fields.create_member_fields),
    ("GET", "/rest/v1/programs/members/schema/fields/{fieldApiName}.json", member_fields.get_member_field),
    ("GET", "/rest/v1/programs/{programId}/members.json", prog.get_members),
    ("POST", "/rest/v1/programs/{programId}/members.json", member_fields.sync_member_data),
    # Custom activities (§7)
    ("GET", "/rest/v1/activities/external/types.json", act.list_types),
    ("POST", "/rest/v1/activities/external/type.json", act.create_type),
    ("GET", "/rest/v1/activities/external/type/{apiName}/describe.json", act.describe_type),
    ("POST", "/rest/v1/activities/external/type/{apiName}/approve.json", act.approve_type),
    ("POST", "/rest/v1/activities/external/type/{apiName}/discardDraft.json", act.discard_draft),
    ("POST", "/rest/v1/activities/external/type/{apiName}/delete.json", act.delete_type),
    ("POST", "/rest/v1/activities/external/type/{apiName}/attributes/create.json", act.create_attributes),
    ("POST", "/rest/v1/activities/external/type/{apiName}/attributes/delete.json", act.delete_attributes),
    ("POST", "/rest/v1/activities/external.json", act.add_activities),
    ("GET", "/rest/v1/activities/types.json", act.all_types),
    ("GET", "/rest/v1/activities/pagingtoken.json", act.paging_token),
    ("GET", "/rest/v1/activities.json", act.get_activities),
    # Custom objects: schema first so "schema" is never taken for an apiName (§8.3)
    ("GET", "/rest/v1/customobjects/schema.json", co.schema_list),
    ("POST", "/rest/v1/customobjects/schema.json", co.schema_sync),
    ("GET", "/rest/v1/customobjects/schema/fieldDataTypes.json", co.field_data_types),
    ("GET", "/rest/v1/customobjects/schema/linkableObjects.json", co.linkable_objects),
    ("GET", "/rest/v1/customobjects/schema/{apiName}/describe.json", co.schema_describe),
    ("POST", "/rest/v1/customobjects/schema/{apiName}/addField.json", co.schema_add_fields),
    ("POST", "/rest/v1/customobjects/schema/{apiName}/deleteField.json", co.schema_delete_fields),
    ("POST", "/rest/v1/customobjects/schema/{apiName}/approve.json", co.schema_approve),
    ("POST", "/rest/v1/customobjects/schema/{apiName}/discardDraft.json", co.schema_discard),
    ("POST", "/rest/v1/customobjects/schema/{apiName}/delete.json", co.schema_delete),
    ("GET", "/rest/v1/customobjects.json", co.list_objects),
    ("GET", "/rest/v1/customobjects/{apiName}/describe.json", co.describe_object),
    ("POST", "/rest/v1/customobjects/{apiName}/delete.json", co.delete_objects),
    ("POST", "/rest/v1/customobjects/{apiName}.json", co.sync_objects),
    ("GET", "/rest/v1/customobjects/{apiName}.json", co.query_objects),
    # Usage (§2.1)
    ("GET", "/rest/v1/stats/usage.json", stats.usage),
    ("GET", "/rest/v1/stats/usage/last7days.json", stats.usage_last7),
    ("GET", "/rest/v1/stats/errors.json", stats.errors),
    ("GET", "/rest/v1/stats/errors/last7days.json", stats.errors_last7),
    # Asset API (§6.1)
    ("GET", "/rest/asset/v1/channels.json", prog.list_channels),
    ("GET", "/rest/asset/v1/channel/byName.json", prog.channel_by_name),
    ("GET", "/rest/asset/v1/programs.json", prog.list_programs),
    ("POST", "/rest/asset/v1/programs.json", prog.create_program),
    ("GET", "/rest/asset/v1/program/byName.json", prog.program_by_name),
    ("GET", "/rest/asset/v1/program/{id}.json", prog.program_by_id),
    # Bulk import (§9.2): no /rest prefix
    ("POST", "/bulk/v1/leads.json", bulk.import_leads),
    ("GET", "/bulk/v1/leads/batch/{batchId}.json", bulk.status_leads),
    ("GET", "/bulk/v1/leads/batch/{batchId}/failures.json", bulk.failures_leads),
    ("GET", "/bulk/v1/leads/batch/{batchId}/warnings.json", bulk.warnings_leads),
    ("POST", "/bulk/v1/customobjects/{apiName}/import.json", bulk.import_custom_objects),
    ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/status.json", bulk.status_custom_objects),
    ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/failures.json", bulk.failures_custom_objects),
    ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/warnings.json", bulk.warnings_custom_objects),
    ("POST", "/bulk/v1/program/{programId}/members/import.json", bulk.import_program_members),
    ("GET", "/bulk/v1/program/members/import/{batchId}/status.json", bulk.status_program_members),
    ("GET", "/bulk/v1/program/members/import/{batchId}/failures.json", bulk.failures_program_members),
    ("GET", "/bulk/v1/program/members/import/{batchId}/warnings.json", bulk.warnings_program_members),
]

ROUTES: list[Route] = [
    Route(method=m, template=t, handler=h, regex=_compile(t), asset=t.startswith("/rest/asset/"))
    for m, t, h in _TABLE
]


def match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """→ (route, path params, path_known). ``path_known`` without a route means wrong method (605)."""
    path_known = False
    for r in ROUTES:
        m = r.regex.match(path)
        if m is None:
            continue
        path_known = True
        if r.method == method:
            return r, m.groupdict(), True
    return None, {}, path_known


ENDPOINTS: list[str] = [r.endpoint for r in ROUTES]
