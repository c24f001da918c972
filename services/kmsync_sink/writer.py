"""The part of the Marketo client the sink uses, as a protocol.

kmsync_marketo.client.MarketoClient satisfies it; all Marketo knowledge (paths, limits, error
codes, retries of response-level errors) stays in that library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from kmsync_marketo.bulk import BulkResult
from kmsync_marketo.client import ActivityRecord, LeadActivity, LeadSyncResult
from kmsync_marketo.limiter import InstanceLimiter
from kmsync_marketo.outcomes import Outcome


class MarketoWriter(Protocol):
    @property
    def limiter(self) -> InstanceLimiter: ...

    async def sync_leads(self, leads: Sequence[Mapping[str, Any]]) -> LeadSyncResult: ...

    async def sync_program_member_status(
        self, program_id: int, status_name: str, lead_ids: Sequence[int]
    ) -> list[Outcome]: ...

    async def sync_custom_objects(
        self, api_name: str, records: Sequence[Mapping[str, Any]]
    ) -> list[Outcome]: ...

    async def add_custom_activities(self, activities: Sequence[ActivityRecord]) -> list[Outcome]: ...

    async def sync_program_member_data(
        self, program_id: int, records: Sequence[Mapping[str, Any]]
    ) -> list[Outcome]: ...

    async def custom_activity_types(self) -> list[dict[str, Any]]: ...

    async def lead_activities(
        self, activity_type_ids: Sequence[int], lead_ids: Sequence[int], since: datetime
    ) -> list[LeadActivity]: ...

    async def usage_today(self, *, reconcile: bool = True) -> int: ...

    def bulk(self) -> BulkWriter | None:
        """The instance's Bulk Import API (None: this writer has none; everything goes over REST)."""
        ...

    async def aclose(self) -> None: ...


class BulkWriter(Protocol):
    """The Bulk Import API for a large window (kmsync_marketo.bulk.BulkImporter satisfies it)."""

    async def import_leads(self, records: Sequence[Mapping[str, Any]]) -> BulkResult: ...

    async def import_custom_objects(
        self, api_name: str, records: Sequence[Mapping[str, Any]], dedupe_fields: Sequence[str] = ()
    ) -> BulkResult: ...

    async def import_program_members(
        self, program_id: int, status_name: str, records: Sequence[Mapping[str, Any]]
    ) -> BulkResult: ...
