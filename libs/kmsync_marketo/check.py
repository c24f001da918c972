"""`kmsync marketo check`: is this Marketo instance set up the way the seed's setup guide requires?

Checks, in order: credentials; one harmless read per API permission area; the event channel with
the nine statuses and steps; the event program(s) on that channel; the custom activity type and its
fields; both custom objects and their fields. ``apply=True`` creates what the API can create
(activity type, custom objects, their fields; then approves them) and says what it cannot
(channels and programs are created in the Marketo UI).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kmsync_contracts.granular import GRANULAR_STATUS_DISPLAY_NAME, GRANULAR_STATUS_FIELD, STATUS_REASON_FIELD
from kmsync_marketo import endpoints as ep
from kmsync_marketo import expected as exp
from kmsync_marketo import lead_schema as lf
from kmsync_marketo import member_fields as mf
from kmsync_marketo import schema as sch
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.errors import MarketoApiError, MarketoAuthError, MarketoError

log = logging.getLogger(__name__)

State = Literal["ok", "missing", "applied", "unverified", "skipped"]
_MARK = {"ok": "[ok]", "missing": "[MISSING]", "applied": "[applied]", "unverified": "[??]", "skipped": "[--]"}


@dataclass
class CheckItem:
    title: str
    state: State
    detail: str = ""
    fix: str = ""
    #: Whether --apply can fix it through the API.
    api_fixable: bool = False


@dataclass
class CheckReport:
    instance: str
    items: list[CheckItem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Nothing missing or left unchecked; items that could not be verified are warnings."""
        return all(i.state in ("ok", "applied", "unverified") for i in self.items)

    def add(self, item: CheckItem) -> CheckItem:
        self.items.append(item)
        return item

    def render(self) -> str:
        lines = [f"Marketo setup check for {self.instance}"]
        for item in self.items:
            lines.append(f"  {_MARK[item.state]:<10} {item.title}")
            if item.detail:
                lines.extend(f"             {d}" for d in item.detail.splitlines())
            if item.fix and item.state in ("missing", "unverified"):
                how = "fix (kmsync marketo check --apply does this)" if item.api_fixable else "fix"
                lines.append(f"             {how}: {item.fix}")
        missing = [i for i in self.items if i.state == "missing"]
        if not missing:
            unverified = sum(1 for i in self.items if i.state == "unverified")
            lines.append(
                "All checks passed."
                if not unverified
                else f"Nothing missing; {unverified} item(s) could not be verified."
            )
        else:
            fixable = sum(1 for i in missing if i.api_fixable)
            lines.append(
                f"{len(missing)} item(s) missing; {fixable} can be created with --apply, "
                f"{len(missing) - fixable} must be done in the Marketo UI."
            )
        return "\n".join(lines)


def _by(items: Sequence[Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    return {str(i.get(key)): i for i in items if i.get(key) is not None}


def _status_rows(channel: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return _by(channel.get("progressionStatuses") or [], "name")


def channel_problems(channel: Mapping[str, Any]) -> list[str]:
    """What a channel lacks compared with the seed's table (name, step, success)."""
    rows = _status_rows(channel)
    problems: list[str] = []
    for st in exp.CHANNEL_STATUSES:
        row = rows.get(st.name)
        if row is None:
            problems.append(f"status {st.name!r} (step {st.step}) is missing")
            continue
        if int(row.get("step", -1)) != st.step:
            problems.append(f"status {st.name!r} has step {row.get('step')}, the guide says {st.step}")
        if bool(row.get("success", False)) != st.success:
            problems.append(f"status {st.name!r} success is {bool(row.get('success'))}, the guide says {st.success}")
    return problems


def _channel_fix(name: str | None) -> str:
    table = ", ".join(f"{s.name} (step {s.step}{', success' if s.success else ''})" for s in exp.CHANNEL_STATUSES)
    where = f"channel {name!r}" if name else "an event program channel"
    return f"in Marketo Admin > Tags > Channels, create or edit {where} (applies to Event programs) with: {table}"


def _field_rows(described: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not described:
        return {}
    return _by(described.get("fields") or [], "name")


def _attr_rows(described: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not described:
        return {}
    rows = _by(described.get("attributes") or [], "apiName")
    primary = described.get("primaryAttribute")
    if isinstance(primary, Mapping) and primary.get("apiName"):
        rows[str(primary["apiName"])] = {**primary, "isPrimary": True}
    return rows


def _same_type(actual: Any, wanted: str) -> bool:
    return str(actual or "").lower() == wanted.lower()


class SetupChecker:
    def __init__(
        self,
        client: MarketoClient,
        *,
        instance_name: str,
        program_ids: Sequence[int] = (),
        channel_name: str | None = None,
        names: Mapping[str, str] | None = None,
        lead_fields: Mapping[str, Sequence[str]] | None = None,
        granular_field: str = GRANULAR_STATUS_FIELD,
        mirror_to_status_reason: bool = False,
    ) -> None:
        """``names``: the seed's name → the API name in this instance, where discovery (API name
        with or without ``_c``, display name) would not find it."""
        self.names = dict(names or {})
        #: Lead field API name → the sources events map to it (tenants file lead_fields, issue #16 §3).
        self.lead_fields = dict(lead_fields or {})
        self.client = client
        self.instance_name = instance_name
        self.program_ids = list(dict.fromkeys(program_ids))
        self.channel_name = channel_name
        #: The program member field for granular labels, and whether statusReason mirrors it (issue #16).
        self.granular_field = granular_field
        self.mirror_to_status_reason = mirror_to_status_reason

    async def run(self, apply: bool = False) -> CheckReport:
        report = CheckReport(self.instance_name)
        if not await self._credentials(report):
            return report
        await self._permissions(report)
        channel = await self._channel(report)
        await self._programs(report, channel)
        await self._lead_fields(report)
        await self._member_field(report, apply)
        activity = await self._activity_type(report, apply)
        objects = {obj.api_name: await self._custom_object(report, obj, apply) for obj in exp.CUSTOM_OBJECTS}
        if not apply:
            await self._write_permissions(report, activity, objects)
        return report

    async def _lead_fields(self, report: CheckReport) -> None:
        """Each lead field the events map registration data to exists in Describe Lead, the API may write it
        and it holds text (docs/reference/marketo-api.md §5.3, §14). A form key cannot be checked against
        Kaltura (docs/reference/kaltura-api.md §10): listed as unverified."""
        if not self.lead_fields:
            return
        try:
            described = await self.client.describe_leads()
        except MarketoError as exc:
            report.add(CheckItem("lead fields for registration data", "unverified", f"Describe Lead failed: {exc}"))
            return
        fields = lf.lead_fields(described)
        for name, sources in self.lead_fields.items():
            report.add(_lead_field_item(name, sources, fields, lf.api_name_shown_as(described, name)))
        forms = sorted({s.removeprefix("form:") for ss in self.lead_fields.values() for s in ss
                        if s.startswith("form:")})
        if forms:
            report.add(CheckItem("registration form keys (profileData)", "unverified",
                                 f"mapped by key: {', '.join(forms)}; that Kaltura stores the form's answers under "
                                 "these keys cannot be checked here (docs/reference/kaltura-api.md §10)",
                                 "compare with a registrant's profileData (Kaltura User Profile list)"))

    async def _member_field(self, report: CheckReport, apply: bool) -> None:
        """The program member field the granular labels go to (docs/reference/marketo-api.md §13.3): exists,
        string, updateable, long enough; ``--apply`` creates it where the role may (§13.2), else the UI
        instruction. With the statusReason mirror: statusReason is updateable (§13.5)."""
        title = f"program member field for granular statuses ({self.granular_field})"
        try:
            fields = mf.member_fields(await self.client.describe_program_members())
        except MarketoError as exc:
            report.add(CheckItem(title, "unverified", f"Describe Program Member failed: {exc}"))
            return
        problem = mf.granular_field_problem(fields, self.granular_field)
        creatable = problem is not None and self.granular_field not in fields and not any(
            f.display_name == GRANULAR_STATUS_DISPLAY_NAME for f in fields.values())
        if problem is not None and apply and creatable:
            try:
                await self.client.create_program_member_fields([mf.granular_field_definition(self.granular_field)])
            except MarketoError as exc:  # 603: the role lacks Read-Write Schema Custom Field (§13.7)
                report.add(CheckItem(title, "missing", f"--apply failed: {exc}", mf.UI_INSTRUCTION))
            else:
                report.add(CheckItem(title, "applied", "created through the API (Create Program Member Field)"))
        elif problem is not None:
            report.add(CheckItem(title, "missing", problem, mf.UI_INSTRUCTION, api_fixable=creatable))
        else:
            report.add(CheckItem(title, "ok", f"string, updateable, {fields[self.granular_field].length or '?'} "
                                              "characters"))
        reason = fields.get(STATUS_REASON_FIELD)
        if self.mirror_to_status_reason and (reason is None or not reason.updateable):
            report.add(CheckItem("statusReason mirror", "missing", "statusReason is not updateable on this instance",
                                 "set program_member_fields.mirror_to_status_reason: false"))

    # ----- credentials and permissions -----
    async def _credentials(self, report: CheckReport) -> bool:
        try:
            await self.client.transport.tokens.bearer()
        except MarketoAuthError as exc:
            report.add(
                CheckItem(
                    "API credentials (client id / secret)",
                    "missing",
                    str(exc),
                    "in Marketo Admin > LaunchPoint > View Details, copy the client id and secret of "
                    "the API-only user's custom service into the tenants file",
                )
            )
            report.add(CheckItem("everything else", "skipped", "not checked without working credentials"))
            return False
        except MarketoError as exc:
            report.add(
                CheckItem(
                    "API credentials (client id / secret)",
                    "missing",
                    f"Identity could not be reached: {exc}",
                    "check the endpoint domain (Admin > Web Services > REST API endpoint, without /rest)",
                )
            )
            report.add(CheckItem("everything else", "skipped", "not checked without a reachable instance"))
            return False
        report.add(CheckItem("API credentials (client id / secret)", "ok", "Identity issued a token"))
        return True

    async def _permissions(self, report: CheckReport) -> None:
        for area, path, params in exp.PERMISSION_PROBES:
            title = f"API permission Access API > {area}"
            try:
                await self.client.transport.call("GET", path, params=dict(params))
            except MarketoApiError as exc:
                if exc.code == "603":
                    report.add(
                        CheckItem(
                            title,
                            "missing",
                            f"Marketo answered 603 {exc.message}",
                            f"in Admin > Users & Roles, give the API user's role 'Access API > {area}'",
                        )
                    )
                elif exc.code == "610":
                    report.add(CheckItem(title, "unverified", f"{path} is not available on this instance (610)"))
                else:
                    report.add(CheckItem(title, "unverified", f"probe {path} answered {exc.code} {exc.message}"))
                continue
            except MarketoError as exc:
                report.add(CheckItem(title, "unverified", f"probe {path} failed: {exc}"))
                continue
            report.add(CheckItem(title, "ok", f"read access confirmed ({path})"))

    # ----- channel and programs (UI only) -----
    async def _channel(self, report: CheckReport) -> Mapping[str, Any] | None:
        title = "event channel with the nine Kaltura statuses"
        try:
            channels = await self.client.channels()
        except MarketoError as exc:
            report.add(
                CheckItem(
                    title, "unverified", f"channels could not be read: {exc}", "grant Access API > Read-Write Assets"
                )
            )
            return None
        candidates = [c for c in channels if not self.channel_name or c.get("name") == self.channel_name]
        scored = sorted(candidates, key=lambda c: len(channel_problems(c)))
        best = scored[0] if scored else None
        if best is not None and not channel_problems(best):
            report.add(
                CheckItem(
                    title,
                    "ok",
                    f"channel {best.get('name')!r} (id {best.get('id')}) has all nine statuses with the guide's steps",
                )
            )
            return best
        if best is not None and len(channel_problems(best)) < len(exp.CHANNEL_STATUSES):
            detail = f"closest channel {best.get('name')!r}:\n" + "\n".join(channel_problems(best))
        else:
            detail = "no channel has the Kaltura statuses"
        report.add(
            CheckItem(title, "missing", detail, _channel_fix(self.channel_name) + " (the API cannot create channels)")
        )
        return None

    async def _programs(self, report: CheckReport, channel: Mapping[str, Any] | None) -> None:
        channel_name = str(channel.get("name")) if channel else self.channel_name
        fix = (
            f"in Marketing Activities create a program of type Event on channel {channel_name!r}"
            if channel_name
            else "create the channel first, then an Event program on it"
        )
        fix += " (--apply does not create programs: the event program is set up in the Marketo UI)"
        if not self.program_ids:
            title = "event program on the Kaltura channel"
            try:
                programs = await self.client.programs()
            except MarketoError as exc:
                report.add(CheckItem(title, "unverified", f"programs could not be read: {exc}"))
                return
            found = [p for p in programs if _is_event_on(p, channel_name)]
            if found:
                names = ", ".join(f"{p.get('name')!r} (id {p.get('id')})" for p in found)
                report.add(CheckItem(title, "ok", f"found {names}; put its id in the tenants file's events"))
            else:
                report.add(CheckItem(title, "missing", "no Event program uses the channel", fix))
            return
        for program_id in self.program_ids:
            title = f"event program {program_id} on the Kaltura channel"
            try:
                program = await self.client.program(program_id)
            except MarketoApiError as exc:
                program = None
                if exc.code not in ("610", "702", "709"):
                    report.add(CheckItem(title, "unverified", f"program {program_id}: {exc.code} {exc.message}"))
                    continue
            except MarketoError as exc:
                report.add(CheckItem(title, "unverified", f"program {program_id} could not be read: {exc}"))
                continue
            if program is None:
                report.add(CheckItem(title, "missing", f"program {program_id} does not exist", fix))
            elif not _is_event_on(program, channel_name):
                report.add(
                    CheckItem(
                        title,
                        "missing",
                        f"program {program.get('name')!r} is type {program.get('type')!r} on channel "
                        f"{program.get('channel')!r}",
                        fix,
                    )
                )
            else:
                report.add(
                    CheckItem(title, "ok", f"{program.get('name')!r} is an Event program on {program.get('channel')!r}")
                )

    # ----- custom activity type -----
    async def _activity_type(self, report: CheckReport, apply: bool) -> sch.ActivitySchema | None:
        want = exp.ENGAGEMENT_ACTIVITY
        title = f"custom activity type {want.api_name!r} and its fields"
        try:
            types = await self.client.custom_activity_types()
            existing, how = sch.match_name(types, want.api_name, name_key="apiName", display_key="name",
                                           override=self.names.get(want.api_name))
            api_name = str(existing["apiName"]) if existing else want.api_name
            approved = await self.client.describe_custom_activity_type(api_name) if existing else None
            draft = await self.client.describe_custom_activity_type(api_name, draft=True) if existing else None
        except MarketoError as exc:
            report.add(
                CheckItem(
                    title,
                    "unverified",
                    f"activity types could not be read: {exc}",
                    "grant Access API > Read-Write Activity Metadata",
                )
            )
            return None
        problems, wrong = self._activity_problems(existing, approved, draft)
        found = (sch.activity_schema(want.api_name, {**existing, **approved}, how)
                 if existing is not None and approved is not None else None)
        if not problems:
            assert found is not None
            report.add(CheckItem(title, "ok", _activity_detail(found)))
            return found
        fix = (
            "create it in Admin > Marketo Custom Activities (or with --apply): primary attribute entry_id "
            "(string), fields (as desired) " + ", ".join(f"{f.name} ({f.data_type})" for f in want.attributes)
        )
        if wrong:
            fix = "delete and re-add these fields with the right type: " + "; ".join(wrong)
        detail = "\n".join(problems) + (f"\n{_activity_detail(found)}" if found is not None else "")
        if apply and not wrong and existing is None:
            try:
                await self._apply_activity_type()
            except MarketoError as exc:
                report.add(CheckItem(title, "missing", detail + f"\n--apply failed: {exc}", fix, True))
                return None
            report.add(CheckItem(title, "applied", detail + "\ncreated/approved through the API"))
            return None
        if apply and not wrong and existing is not None:
            try:
                await self.client.approve_custom_activity_type(api_name)
            except MarketoError as exc:
                report.add(CheckItem(title, "missing", detail + f"\n--apply failed: {exc}", fix, True))
                return None
            report.add(CheckItem(title, "applied", detail + "\napproved through the API"))
            return None
        report.add(CheckItem(title, "missing", detail, fix, api_fixable=not wrong))
        return None

    def _activity_problems(
        self,
        existing: Mapping[str, Any] | None,
        approved: Mapping[str, Any] | None,
        draft: Mapping[str, Any] | None,
    ) -> tuple[list[str], list[str]]:
        """(what stops kmsync writing activities, what needs the Marketo UI). Fields the admin did not
        add are not problems: kmsync omits them (the seed: "add the following fields as desired")."""
        want = exp.ENGAGEMENT_ACTIVITY
        if existing is None:
            return [f"activity type {want.api_name!r} does not exist (looked for it by API name with and "
                    "without _c and by display name)"], []
        problems: list[str] = []
        live = _attr_rows(approved)
        pending = _attr_rows(draft)
        status = str(existing.get("status", ""))
        if status != "approved" or approved is None:
            problems.append(f"status is {status!r}, not approved")
        wrong: list[str] = []
        primary = live.get(want.primary.name) or pending.get(want.primary.name)
        if primary is None or not primary.get("isPrimary"):
            wrong.append(f"primary attribute must be {want.primary.name} (string)")
        for f in want.attributes:
            row = live.get(f.name)
            if row is not None and not _same_type(row.get("dataType"), f.data_type):
                wrong.append(f"{f.name} is {row.get('dataType')}, the guide says {f.data_type}")
        problems.extend(wrong)
        return problems, wrong

    async def _apply_activity_type(self) -> None:
        want = exp.ENGAGEMENT_ACTIVITY
        await self.client.create_custom_activity_type(
            {
                "apiName": want.api_name,
                "name": want.name,
                "description": want.description,
                "triggerName": want.trigger_name,
                "filterName": want.filter_name,
                "primaryAttribute": {
                    "apiName": want.primary.name,
                    "name": want.primary.name,
                    "description": want.primary.description,
                },
            }
        )
        await self.client.add_custom_activity_attributes(
            want.api_name,
            [
                {"apiName": f.name, "name": f.name, "dataType": f.data_type, "description": f.description}
                for f in want.attributes
            ],
        )
        await self.client.approve_custom_activity_type(want.api_name)

    # ----- custom objects -----
    async def _object_schemas(self) -> list[dict[str, Any]]:
        try:
            return await self.client.custom_object_schemas()
        except MarketoApiError as exc:
            if exc.code != "603":
                raise
            # An API user for data needs no Custom Object Type permission (§8.3 is the schema
            # admin's): read the approved objects as the sink does (Custom Object read, §8.1).
            return [{**o, "apiName": o.get("name"), "state": "approved", "readOnly": True}
                    for o in await self.client.custom_objects()]

    async def _custom_object(
        self, report: CheckReport, want: exp.ExpectedObject, apply: bool
    ) -> sch.ObjectSchema | None:
        title = f"custom object {want.api_name!r} and its fields"
        try:
            schemas = await self._object_schemas()
            existing, how = sch.match_name(schemas, want.api_name, name_key="apiName", display_key="displayName",
                                           override=self.names.get(want.api_name))
            api_name = str(existing["apiName"]) if existing else want.api_name
            approved = draft = None
            if existing is not None and existing.get("readOnly"):
                approved = await self.client.describe_custom_object(api_name)
            elif existing is not None:
                state = str(existing.get("state", ""))
                if state in ("approved", "approvedWithDraft"):
                    approved = await self.client.describe_custom_object_schema(api_name, "approved")
                if state in ("draft", "approvedWithDraft"):
                    draft = await self.client.describe_custom_object_schema(api_name, "draft")
        except MarketoApiError as exc:
            fix = (
                "custom objects need a subscription that includes them"
                if exc.code in ("616", "1026")
                else "grant Access API > Read-Write Custom Object"
            )
            report.add(CheckItem(title, "unverified", f"custom object types could not be read: {exc}", fix))
            return None
        except MarketoError as exc:
            report.add(CheckItem(title, "unverified", f"custom object types could not be read: {exc}"))
            return None
        found = sch.object_schema(want.api_name, approved, how) if approved is not None else None
        problems, manual = _object_problems(want, existing, approved, draft, found)
        if not problems:
            assert found is not None
            report.add(CheckItem(title, "ok", _object_detail(found)))
            return found
        fix = (
            f"create it in Admin > Marketo Custom Objects (or with --apply): dedupe "
            f"{' + '.join(want.dedupe_fields)}, fields (as desired) "
            + ", ".join(f"{f.name} ({f.data_type})" for f in want.fields)
        )
        if manual:
            fix = "in Admin > Marketo Custom Objects: " + "; ".join(manual)
        detail = "\n".join(problems) + (f"\n{_object_detail(found)}" if found is not None else "")
        if apply and not manual:
            try:
                await self._apply_object(want, existing, api_name)
            except MarketoError as exc:
                report.add(CheckItem(title, "missing", detail + f"\n--apply failed: {exc}", fix, True))
                return None
            report.add(CheckItem(title, "applied", detail + "\ncreated/approved through the API"))
            return None
        report.add(CheckItem(title, "missing", detail, fix, api_fixable=not manual))
        return None

    async def _apply_object(self, want: exp.ExpectedObject, existing: Mapping[str, Any] | None, api_name: str) -> None:
        """A missing object is created with every seed field and approved; an existing draft is
        approved. Fields an admin left out of an existing object stay out (omitted, not added)."""
        if existing is None:
            await self.client.sync_custom_object_type(
                {
                    "apiName": want.api_name,
                    "displayName": want.display_name,
                    "pluralName": want.plural_name,
                    "description": want.description,
                    "showInLeadDetail": True,
                }
            )
            fields: list[dict[str, Any]] = []
            for f in want.fields:
                spec: dict[str, Any] = {
                    "name": f.name,
                    "displayName": f.name,
                    "dataType": f.data_type,
                    "description": f.description,
                    "isDedupeField": f.dedupe,
                }
                if f.related_to:
                    spec["relatedTo"] = {"name": f.related_to[0], "field": f.related_to[1]}
                fields.append(spec)
            await self.client.add_custom_object_fields(want.api_name, fields)
        await self.client.approve_custom_object_type(api_name)

    # ----- write permissions, probed without leaving data behind -----
    async def _write_permissions(
        self, report: CheckReport, activity: sch.ActivitySchema | None, objects: dict[str, sch.ObjectSchema | None]
    ) -> None:
        """One write per kind that Marketo must refuse for the data, not for the role: an updateOnly
        lead upsert of an address no lead has (§5.1, 1004), an updateOnly custom object upsert of a key
        no record has (§8.2, 1013), a custom activity on lead id 0, which no lead has (§7.1, 1004).
        A 603 means the API user's role lacks the write permission."""
        probe_date = datetime.now(UTC).isoformat()
        await self._probe(report, "leads (Sync Leads, Sync Program Member Status)", "Read-Write Person",
                          ep.LEADS, {"action": "updateOnly", "lookupField": "email",
                                     "input": [{"email": PROBE_EMAIL}]})
        for logical, found in objects.items():
            title = f"custom object {logical!r}"
            if found is None:
                report.add(CheckItem(f"write permission: {title}", "skipped", "not probed: the object is not usable"))
                continue
            key = {f: _probe_value(found.fields.get(f)) for f in found.dedupe_fields}
            await self._probe(report, f"{title} ({found.api_name})", "Read-Write Custom Object",
                              ep.custom_object_sync(found.api_name),
                              {"action": "updateOnly", "dedupeBy": "dedupeFields", "input": [key]})
        if activity is None:
            report.add(CheckItem("write permission: custom activities", "skipped",
                                 "not probed: the activity type is not usable"))
            return
        await self._probe(report, f"custom activities ({activity.api_name})", "Read-Write Activity",
                          ep.CUSTOM_ACTIVITIES,
                          {"input": [{"leadId": 0, "activityDate": probe_date, "activityTypeId": activity.type_id,
                                      "primaryAttributeValue": PROBE_VALUE, "attributes": []}]})

    async def _probe(self, report: CheckReport, what: str, permission: str, path: str, body: dict[str, Any]) -> None:
        title = f"write permission: {what}"
        try:
            answer = await self.client.transport.call("POST", path, json=body)
        except MarketoApiError as exc:
            if exc.code == "603":
                report.add(CheckItem(title, "missing", f"Marketo answered 603 {exc.message} to a write",
                                     f"in Admin > Users & Roles, give the API user's role 'Access API > {permission}'"))
            else:
                report.add(CheckItem(title, "unverified", f"probe answered {exc.code} {exc.message}"))
            return
        except MarketoError as exc:
            report.add(CheckItem(title, "unverified", f"probe failed: {exc}"))
            return
        results = [r for r in answer.get("result") or [] if isinstance(r, Mapping)]
        if any(str(r.get("status")) not in ("skipped", "") for r in results):
            # Should not happen (the probe targets nothing that exists); say so rather than hide it.
            report.add(CheckItem(title, "ok", f"write accepted; the probe wrote a record: {results[0]}"))
            return
        report.add(CheckItem(title, "ok", f"{permission} confirmed by a write Marketo refused for its data "
                                          "(nothing written)"))


#: What the write probes name: an address and values no record has.
PROBE_EMAIL = "kmsync-permission-probe@invalid.example"
PROBE_VALUE = "kmsync-permission-probe"


def _probe_value(f: sch.FieldInfo | None) -> Any:
    if f is not None and f.data_type in ("integer", "link", "float", "currency"):
        return 0
    return PROBE_VALUE


def _lengths(fields: Mapping[str, sch.FieldInfo], names: Sequence[str]) -> str:
    cut = [f"{n} ({fields[n].limit})" for n in names
           if n in fields and fields[n].data_type in sch.CHAR_LENGTH_TYPES
           and (fields[n].limit or 0) < sch.STRING_DEFAULT_LENGTH]
    return f"\nstrings cut to the field length: {', '.join(cut)}" if cut else ""


def _object_detail(found: sch.ObjectSchema) -> str:
    written = sch.written_fields(found.logical, found)
    omitted = sch.omitted_fields(found.logical, found)
    link = f", link {found.link_field} -> {'.'.join(found.link_target or ('Lead', 'id'))}" if found.link_field else ""
    lines = [f"found as {found.api_name!r} ({found.matched_by}); dedupe {' + '.join(found.dedupe_fields)}{link}",
             f"kmsync writes {len(written)} field(s): {', '.join(written)}"]
    lines.append(f"kmsync omits {len(omitted)} field(s) the instance does not have: {', '.join(omitted)}"
                 if omitted else "kmsync omits no field")
    names = [found.link_field if n == sch.SEED_LINK_FIELD and found.link_field else n for n in written]
    return "\n".join(lines) + _lengths(found.fields, names)


def _activity_detail(found: sch.ActivitySchema | None) -> str:
    if found is None:
        return ""
    written = sch.written_fields(found.logical, found)
    omitted = sch.omitted_fields(found.logical, found)
    primary = found.primary.name if found.primary else "?"
    lines = [f"found as {found.api_name!r} (id {found.type_id}, {found.matched_by}), approved, {primary} primary",
             f"kmsync writes {len(written)} field(s): {', '.join(written)}"]
    lines.append(f"kmsync omits {len(omitted)} field(s) the instance does not have: {', '.join(omitted)}"
                 if omitted else "kmsync omits no field")
    return "\n".join(lines) + _lengths(found.attributes, written)


def _object_problems(
    want: exp.ExpectedObject,
    existing: Mapping[str, Any] | None,
    approved: Mapping[str, Any] | None,
    draft: Mapping[str, Any] | None,
    found: sch.ObjectSchema | None,
) -> tuple[list[str], list[str]]:
    """(what stops kmsync writing the object, what needs the Marketo UI). Seed fields the admin did
    not create are omitted by kmsync, not problems; the dedupe rule (kmsync_marketo.schema) is."""
    if existing is None:
        return [f"custom object {want.api_name!r} does not exist (looked for it by API name with and without "
                "_c and by display name)"], []
    problems: list[str] = []
    manual: list[str] = []
    state = str(existing.get("state", ""))
    if state != "approved":
        problems.append(f"state is {state!r}, not approved")
    live = _field_rows(approved)
    pending = _field_rows(draft)
    if approved is not None and sch.seed.PRIMARY_FIELD not in live:
        problems.append(f"field {sch.seed.PRIMARY_FIELD} (string) is missing: records cannot be told apart by session")
        manual.append(f"delete and recreate the custom object with {sch.seed.PRIMARY_FIELD} as a dedupe field")
    for f in want.fields:
        row = live.get(f.name)
        if row is None:
            if f.name in pending:
                problems.append(f"field {f.name} is waiting for approval")
            continue
        if not _same_type(row.get("dataType"), f.data_type):
            problems.append(f"field {f.name} is {row.get('dataType')}, the guide says {f.data_type}")
            manual.append(f"delete and re-add {f.name} as {f.data_type}")
    if found is not None and (problem := sch.dedupe_problem(found)) is not None:
        problems.append(problem)
        manual.append(f"recreate {found.api_name!r} with dedupe fields that name the session and the person")
    return problems, manual


def _is_event_on(program: Mapping[str, Any], channel_name: str | None) -> bool:
    is_event = str(program.get("type", "")).lower() == exp.PROGRAM_TYPE.lower()
    return is_event and (channel_name is None or program.get("channel") == channel_name)


def _lead_field_item(name: str, sources: Sequence[str], fields: Mapping[str, sch.FieldInfo],
                     shown_as: str | None) -> CheckItem:
    title = f"lead field {name} <- {', '.join(sources)}"
    problem = lf.field_problem(name, fields)
    if problem is None:
        info = fields[name]
        return CheckItem(title, "ok", f"{info.data_type}, at most {info.limit} characters (longer values are cut "
                                      "and the lead's outcome says so)" if info.limit else info.data_type)
    if shown_as is not None:
        problem += f"; a field displayed that way has API name {shown_as!r}: map that name instead"
    fix = (f"in Marketo Admin > Field Management > New Custom Field, create a String field whose API name is "
           f"{name!r}, or change that entry of events[].lead_fields in the tenants file; until then kmsync writes "
           f"leads without it (outcome kmsync.lead_field_omitted)")
    return CheckItem(title, "missing", problem, fix)
