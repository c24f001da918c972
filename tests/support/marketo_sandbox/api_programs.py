"""Channels and programs (Asset API) and program members (docs/reference/marketo-api.md §6)."""

from __future__ import annotations

from typing import Any

from .api_member_fields import all_member_fields
from .call import Call, decode_page, encode_page, input_records, int_arg, split_values
from .envelope import NO_ASSETS_WARNING, MarketoError, asset_iso, iso, reason
from .instance import Instance
from .model import Activity, Channel, Member, Program

CHANGE_PROGRAM_STATUS_TYPE_ID = 104  # standard activity type "Change Status in Progression"
SKIP_1037 = "Lead skipped because it is already in or past this status"  # §6.2


def channel_json(ch: Channel) -> dict[str, Any]:
    return {
        "id": ch.id,
        "name": ch.name,
        "applicableProgramType": ch.applicable_program_type,
        "progressionStatuses": [
            {"name": s.name, "step": s.step, "description": s.description, "hidden": s.hidden,
             "success": s.success, "type": "success" if s.success else "regular"}
            for s in ch.statuses
        ],
        "createdAt": asset_iso(ch.created),
        "updatedAt": asset_iso(ch.updated),
    }


def program_json(p: Program) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "createdAt": asset_iso(p.created),
        "updatedAt": asset_iso(p.updated),
        "url": f"https://app-sandbox.marketo.com/#PG{p.id}A1",
        "type": p.type,
        "channel": p.channel,
        "folder": {"type": "Folder", "value": p.folder_id, "folderName": "Marketing Activities"},
        "status": "",
        "workspace": "Default",
        "tags": [],
        "costs": None,
    }


def _max_return(call: Call) -> tuple[int, int]:
    max_return = int_arg(call.arg("maxReturn"), "maxReturn", 20)
    if max_return < 1 or max_return > 200:  # §2.1 asset page size: default 20, max 200
        raise MarketoError("1003", f"Invalid maxReturn '{max_return}', must be between 1 and 200")
    offset = int_arg(call.arg("offset"), "offset", 0)
    return max_return, max(offset, 0)


def list_channels(call: Call) -> dict[str, Any]:
    """GET /rest/asset/v1/channels.json"""
    max_return, offset = _max_return(call)
    chans = sorted(call.inst.channels.values(), key=lambda c: c.id)[offset: offset + max_return]
    if not chans:
        return {"warnings": [NO_ASSETS_WARNING]}
    return {"result": [channel_json(c) for c in chans]}


def channel_by_name(call: Call) -> dict[str, Any]:
    """GET /rest/asset/v1/channel/byName.json?name= (there is no get-by-id, §6.1)"""
    name = call.arg("name")
    if not name:
        raise MarketoError("701", "name cannot be blank")
    ch = call.inst.channels.get(name)
    if ch is None:
        return {"warnings": [NO_ASSETS_WARNING]}
    return {"result": [channel_json(ch)]}


def program_by_id(call: Call) -> dict[str, Any]:
    """GET /rest/asset/v1/program/{id}.json"""
    p = call.inst.programs.get(call.int_param("id"))
    if p is None:
        return {"warnings": [NO_ASSETS_WARNING]}
    return {"result": [program_json(p)]}


def program_by_name(call: Call) -> dict[str, Any]:
    """GET /rest/asset/v1/program/byName.json?name="""
    name = call.arg("name")
    if not name:
        raise MarketoError("701", "name cannot be blank")
    for p in call.inst.programs.values():
        if p.name == name:
            return {"result": [program_json(p)]}
    return {"warnings": [NO_ASSETS_WARNING]}


def list_programs(call: Call) -> dict[str, Any]:
    """GET /rest/asset/v1/programs.json"""
    max_return, offset = _max_return(call)
    progs = sorted(call.inst.programs.values(), key=lambda p: p.id)[offset: offset + max_return]
    if not progs:
        return {"warnings": [NO_ASSETS_WARNING]}
    return {"result": [program_json(p) for p in progs]}


def _program(inst: Instance, program_id: int) -> Program:
    p = inst.programs.get(program_id)
    if p is None:
        raise MarketoError("1013", f"Program '{program_id}' not found")
    return p


def _lead_id(rec: Any) -> int | None:
    if not isinstance(rec, dict):
        return None
    raw = rec.get("leadId")
    if isinstance(raw, bool):
        return None
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def apply_status(inst: Instance, program: Program, lead_id: int, status_name: str, now: float) -> str | None:
    """Forward-only status change. → "created"/"updated", or None when skipped with 1037."""
    ch = inst.channel_for(program)
    st = ch.status(status_name) if ch else None
    if st is None:
        raise KeyError(status_name)
    member = inst.members.get((program.id, lead_id))
    old = member.status_name if member else "Not in Program"
    if member is not None and member.step >= st.step:
        return None
    if member is None:
        member = Member(program_id=program.id, lead_id=lead_id, status_name=st.name, step=st.step,
                        reached_success=False, membership_date=now, updated=now)
        inst.members[(program.id, lead_id)] = member
        outcome = "created"
    else:
        member.status_name = st.name
        member.step = st.step
        member.updated = now
        outcome = "updated"
    if st.success and not member.reached_success:
        member.reached_success = True
        member.reached_success_date = now
    change = {"programId": program.id, "leadId": lead_id, "oldStatus": old, "newStatus": st.name,
              "at": iso(now)}
    inst.status_changes.append(change)
    # "On success a Change Program Status activity is written to the lead's log" (§6.2)
    act_id = inst.next_id("activity")
    inst.activities.append(Activity(
        id=act_id, guid=str(act_id), lead_id=lead_id, type_id=CHANGE_PROGRAM_STATUS_TYPE_ID, date=now,
        primary_value=program.name,
        attributes=[{"name": "New Status", "value": st.name}, {"name": "Old Status", "value": old},
                    {"name": "Reason", "value": "Changed by API"}, {"name": "Program Id", "value": program.id}],
        created=now))
    return outcome


def _status_change(call: Call, status_key: str, limit: int | None = None) -> tuple[Program, str, list[Any]]:
    """What a status-change call names: the path's program, the body's status (under ``status_key``)
    and input records. ``701`` when the status or the input is blank (§6.2)."""
    program = _program(call.inst, call.int_param("programId"))
    body = call.body_dict()
    status_name = body.get(status_key)
    if not isinstance(status_name, str) or not status_name:
        raise MarketoError("701", f"{status_key} cannot be blank")
    return program, status_name, input_records(body, limit)


def sync_member_status(call: Call) -> dict[str, Any]:
    """POST /rest/v1/programs/{programId}/members/status.json (§6.2)."""
    inst = call.inst
    program, status_name, records = _status_change(call, "statusName", inst.limits.batch_size)
    ch = inst.channel_for(program)
    known = ch is not None and ch.status(status_name) is not None
    if not known and inst.behaviour.unknown_status_level == "response":
        raise MarketoError("1025", "Program status not found")
    results: list[dict[str, Any]] = []
    for seq, rec in enumerate(records):
        lead_id = _lead_id(rec)
        if lead_id is None:
            results.append({"seq": seq, "status": "skipped",
                            "reasons": [reason("1003", "Invalid data: leadId is required")]})
            continue
        if not known:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1025", "Program status not found")]})
            continue
        if lead_id not in inst.leads:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1004", "Lead not found")]})
            continue
        outcome = apply_status(inst, program, lead_id, status_name, call.now)
        if outcome is None:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1037", SKIP_1037)]})
        else:
            results.append({"seq": seq, "status": outcome, "leadId": lead_id})
    return {"result": results}


DEFAULT_MEMBER_FIELDS = ["leadId", "reachedSuccess", "programId", "acquiredBy", "membershipDate"]  # §6.3


def member_json(inst: Instance, m: Member, fields: list[str], seq: int) -> dict[str, Any]:
    values: dict[str, Any] = {
        "acquiredBy": m.acquired_by, "createdAt": iso(m.membership_date), "isExhausted": False,
        "leadId": m.lead_id, "membershipDate": iso(m.membership_date), "programId": m.program_id,
        "program": inst.programs[m.program_id].name if m.program_id in inst.programs else None,
        "reachedSuccess": m.reached_success,
        "reachedSuccessDate": iso(m.reached_success_date) if m.reached_success_date else None,
        "statusName": m.status_name, "statusReason": None, "updatedAt": iso(m.updated),
        **m.data,
    }
    out: dict[str, Any] = {"seq": seq}
    for f in fields:
        out[f] = values.get(f)
    return out


def get_members(call: Call) -> dict[str, Any]:
    """GET /rest/v1/programs/{programId}/members.json (§6.3)."""
    inst = call.inst
    program = _program(inst, call.int_param("programId"))
    filter_type = call.arg("filterType")
    if not filter_type:
        raise MarketoError("1003", "filterType not specified")
    fields = split_values(call.arg("fields")) or list(DEFAULT_MEMBER_FIELDS)
    known = all_member_fields(inst)  # standard and custom fields (§13.3)
    for f in fields:
        if f not in known:
            raise MarketoError("1006", f"Field '{f}' not found")
    members = [m for m in inst.members.values() if m.program_id == program.id]
    if filter_type == "updatedAt":
        from .fields import InvalidValue, parse_datetime

        try:
            start = parse_datetime(call.arg("startAt") or "")
            end = parse_datetime(call.arg("endAt") or "")
        except InvalidValue:
            raise MarketoError("1003", "Invalid startAt/endAt") from None
        members = [m for m in members if start <= m.updated <= end]
    else:
        if filter_type not in ("leadId", "statusName", "reachedSuccess"):
            raise MarketoError("1011", f"Field '{filter_type}' not supported")
        values = split_values(call.arg("filterValues"))
        if not values:
            raise MarketoError("1003", "filterValues not specified")
        if len(values) > inst.limits.batch_size:
            raise MarketoError("1003", f"Invalid data: more than {inst.limits.batch_size} filterValues")
        if filter_type == "leadId":
            members = [m for m in members if str(m.lead_id) in values]
        elif filter_type == "statusName":
            members = [m for m in members if m.status_name in values]
        else:
            members = [m for m in members if str(m.reached_success).lower() in [v.lower() for v in values]]
    members.sort(key=lambda m: m.lead_id)
    batch = int_arg(call.arg("batchSize"), "batchSize", inst.limits.batch_size)
    offset = 0
    token = call.arg("nextPageToken")
    if token:
        offset = int(decode_page(token).get("o", 0))
    page = members[offset: offset + batch]
    out: dict[str, Any] = {
        "result": [member_json(inst, m, fields, offset + i) for i, m in enumerate(page)],
        "moreResult": offset + batch < len(members),
    }
    if offset + batch < len(members):
        out["nextPageToken"] = encode_page({"o": offset + batch})
    return out


def delete_members(call: Call) -> dict[str, Any]:
    """POST /rest/v1/programs/{programId}/members/delete.json (§6.3)."""
    inst = call.inst
    program = _program(inst, call.int_param("programId"))
    records = input_records(call.body_dict())
    results: list[dict[str, Any]] = []
    for seq, rec in enumerate(records):
        lead_id = _lead_id(rec)
        if lead_id is None or (program.id, lead_id) not in inst.members:
            results.append({"seq": seq, "status": "skipped", "reasons": [reason("1037", "Lead not in program")]})
            continue
        del inst.members[(program.id, lead_id)]
        results.append({"seq": seq, "status": "deleted", "leadId": lead_id})
    return {"result": results}


def leads_by_program(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/programs/{programId}.json — leads with their membership (§6.3)."""
    from .api_leads import DEFAULT_LEAD_FIELDS, lead_record

    inst = call.inst
    program = _program(inst, call.int_param("programId"))
    fields = split_values(call.arg("fields")) or list(DEFAULT_LEAD_FIELDS)
    members = sorted((m for m in inst.members.values() if m.program_id == program.id), key=lambda m: m.lead_id)
    batch = int_arg(call.arg("batchSize"), "batchSize", inst.limits.batch_size)
    offset = 0
    token = call.arg("nextPageToken")
    if token:
        offset = int(decode_page(token).get("o", 0))
    result = []
    for m in members[offset: offset + batch]:
        lead = inst.leads.get(m.lead_id)
        if lead is None:
            continue
        rec = lead_record(lead, fields)
        rec["membership"] = {"progressionStatus": m.status_name, "acquiredBy": m.acquired_by,
                             "reachedSuccess": m.reached_success, "membershipDate": iso(m.membership_date),
                             "updatedAt": iso(m.updated)}
        result.append(rec)
    out: dict[str, Any] = {"result": result}
    if offset + batch < len(members):
        out["nextPageToken"] = encode_page({"o": offset + batch})
        out["moreResult"] = True
    return out


PROGRAM_TYPES = {"program": "Default", "default": "Default", "event": "Event", "webinar": "Event with Webinar",
                 "event with webinar": "Event with Webinar", "engagement": "Engagement", "email": "Email"}


def add_channel(inst: Instance, name: str, statuses: list[tuple[str, int, bool]], program_type: str,
                now: float) -> Channel:
    """Seed a channel (there is no Marketo API to create one)."""
    from .model import ProgressionStatus

    if not name:
        raise ValueError("channel name must not be empty")
    if name in inst.channels:
        raise ValueError(f"channel {name!r} already exists")
    steps = [s for _, s, _ in statuses]
    if any(s < 0 for s in steps):
        raise ValueError("steps must be >= 0")
    ch = Channel(id=inst.next_id("channel"), name=name, applicable_program_type=program_type,
                 statuses=[ProgressionStatus(name=n, step=s, success=ok) for n, s, ok in statuses],
                 created=now, updated=now)
    inst.channels[name] = ch
    return ch


def add_program(inst: Instance, name: str, channel: str, program_type: str, now: float,
                description: str = "", program_id: int | None = None) -> Program:
    """Create a program on an existing channel (the channel is fixed at creation, §6.1)."""
    if channel not in inst.channels:
        raise ValueError(f"channel {channel!r} not found")
    if any(p.name == name for p in inst.programs.values()):
        raise ValueError(f"program {name!r} already exists")
    pid = program_id if program_id is not None else inst.next_id("program")
    if pid in inst.programs:
        raise ValueError(f"program id {pid} already exists")
    prog = Program(id=pid, name=name, type=program_type, channel=channel, description=description,
                   created=now, updated=now)
    inst.programs[pid] = prog
    return prog


def create_program(call: Call) -> dict[str, Any]:
    """POST /rest/asset/v1/programs.json (form: name, folder, type, channel, description)."""
    name = call.arg("name")
    channel = call.arg("channel")
    raw_type = call.arg("type")
    for label, value in (("name", name), ("type", raw_type), ("channel", channel), ("folder", call.arg("folder"))):
        if not value:
            raise MarketoError("701", f"{label} cannot be blank")
    assert name and channel and raw_type
    program_type = PROGRAM_TYPES.get(raw_type.lower())
    if program_type is None:
        raise MarketoError("709", f"Invalid program type '{raw_type}'")
    try:
        prog = add_program(call.inst, name, channel, program_type, call.now, call.arg("description") or "")
    except ValueError as e:
        raise MarketoError("709", str(e)) from None
    return {"result": [program_json(prog)]}


def change_lead_program_status(call: Call) -> dict[str, Any]:
    """Deprecated POST /rest/v1/leads/programs/{programId}/status.json: existing members only (§6.2)."""
    inst = call.inst
    program, status_name, records = _status_change(call, "status")
    ch = inst.channel_for(program)
    if ch is None or ch.status(status_name) is None:
        raise MarketoError("1025", "Program status not found")
    results: list[dict[str, Any]] = []
    for rec in records:
        raw = rec.get("id") if isinstance(rec, dict) else None
        lead_id = _lead_id({"leadId": raw})
        if lead_id is None or (program.id, lead_id) not in inst.members:
            results.append({"id": raw, "status": "skipped", "reasons": [reason("1013", "Membership not found")]})
            continue
        outcome = apply_status(inst, program, lead_id, status_name, call.now)
        if outcome is None:
            results.append({"id": lead_id, "status": "skipped", "reasons": [reason("1037", SKIP_1037)]})
        else:
            results.append({"id": lead_id, "status": "updated"})
    return {"result": results}


def lead_program_membership(call: Call) -> dict[str, Any]:
    """GET /rest/v1/leads/{id}/programMembership.json — the programs a lead belongs to (§6.3)."""
    inst = call.inst
    lead_id = call.int_param("id")
    out = []
    for m in sorted(inst.members.values(), key=lambda m: m.program_id):
        if m.lead_id != lead_id or m.program_id not in inst.programs:
            continue
        p = inst.programs[m.program_id]
        out.append({"id": p.id, "name": p.name, "description": p.description, "createdAt": iso(p.created),
                    "updatedAt": iso(p.updated), "url": program_json(p)["url"], "type": p.type,
                    "channel": p.channel, "progressionStatus": m.status_name, "isExhausted": False,
                    "acquiredBy": m.acquired_by, "reachedSuccess": m.reached_success,
                    "membershipDate": iso(m.membership_date)})
    return {"result": out}
