"""Lead upserts shaped onto the instance's lead fields, and the 1021 company fallback (issue #16 §3).

The executor's lead stage calls these: each lead record is reduced to the fields the instance has
and the API may write, strings cut to length (kmsync_marketo.lead_schema, docs/reference/marketo-api.md
§5.3); a lead Marketo refuses with 1021 for its company is sent once more without it
(``KMSYNC_SINK_COMPANY_ON_1021``, §14). Whatever was left out or cut is named in the lead's outcome,
with a reason code, so it is never silent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.lead_schema import CompanyRetry, LeadShaped, company_note, sync_leads_without_refused_company
from kmsync_marketo.outcomes import Outcome
from kmsync_sink.decisions import Decision
from kmsync_sink.planner import LeadCall
from kmsync_sink.schema_map import InstanceSchemaMap
from kmsync_sink.writer import MarketoWriter

#: Counts one Sync Leads call: (records sent, their outcomes).
CallObserver = Callable[[int, Sequence[Outcome]], None]


async def shaped_leads(schema: InstanceSchemaMap | None, call: LeadCall) -> list[LeadShaped]:
    """The call's lead records as the instance takes them (unshaped while its fields are unknown)."""
    records = [li.record() for li in call.inputs]
    fields = None if schema is None else await schema.lead_fields()
    if schema is None or fields is None:
        return [LeadShaped(dict(r)) for r in records]
    return [schema.shape_lead(fields, r) for r in records]


class _Observed:
    """The writer's Sync Leads, each call counted like every other call (``observe_call``)."""

    def __init__(self, writer: MarketoWriter, observe: CallObserver) -> None:
        self.writer = writer
        self.observe = observe

    async def sync_leads(self, records: Sequence[Mapping[str, Any]]) -> Any:
        result = await self.writer.sync_leads(records)
        self.observe(len(records), result.outcomes)
        return result


async def sync_leads(writer: MarketoWriter, schema: InstanceSchemaMap | None, records: Sequence[Mapping[str, Any]],
                     observe: CallObserver) -> CompanyRetry:
    """Sync Leads, with the 1021 fallback unless ``KMSYNC_SINK_COMPANY_ON_1021=fail``."""
    observed = _Observed(writer, observe)
    if schema is not None and schema.company_on_1021 == "drop_and_retry":
        return await sync_leads_without_refused_company(observed, records)
    result = await observed.sync_leads(records)
    return CompanyRetry(list(result.outcomes), dict(result.lead_ids), {})


def noted(d: Decision, shaped: LeadShaped, company: Sequence[str] = ()) -> Decision:
    """A lead written without a mapped field, or with a value cut, says so in its outcome."""
    if d.failed or d.reason_code is not None or not (company or shaped.dropped or shaped.truncated):
        return d  # nothing to say (most leads: no note is built, issue #22)
    notes = [n for n in (company_note(company), shaped.note()) if n]
    if not notes:
        return d
    code = (ReasonCode.COMPANY_DROPPED if company else
            ReasonCode.LEAD_FIELD_OMITTED if shaped.dropped else ReasonCode.TRUNCATED)
    return dataclasses.replace(d, reason_code=code, reason="; ".join(notes))
