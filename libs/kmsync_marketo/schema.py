"""The customer's Marketo as the admin really set it up (issue #17): discovered API names, fields,
lengths, dedupe and link fields of the custom activity type and the two custom objects.

The seed says of both schemas "add the following fields as desired", and custom objects made in
Marketo's UI get an API name ending in ``_c`` (the seed itself names one ``kalturaUserPolls_c``; the
bulk import examples in docs/reference/marketo-api.md §9.2 show ``car_c``). So kmsync never assumes the names or
the field set: it reads them (describe calls, §7.2 and §8.1), writes only fields that exist, cuts
strings to each field's length and refuses an object whose dedupe fields would make attendees
overwrite each other.

Everything but ``discover_schema`` is pure (matching, record shaping, the dedupe rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from kmsync_contracts import seed
from kmsync_marketo.errors import ErrorClass, MarketoApiError

#: docs/reference/marketo-api.md §5.3 "Field data types": string holds 255 characters, text 30,000 bytes. Describe
#: gives a field's own ``length`` where it has one (§8.1: ``"length":36``); these are the defaults.
STRING_DEFAULT_LENGTH = 255
TEXT_MAX_BYTES = 30_000
#: Data types whose values are strings cut to the field's length in characters.
CHAR_LENGTH_TYPES = frozenset({"string", "email", "phone", "url"})
#: The suffix Marketo's UI adds to a custom object's API name (seed: ``kalturaUserPolls_c``; §9.2 ``car_c``).
UI_SUFFIX = "_c"
#: Fields Marketo maintains on every custom object (§8.1); never written.
SYSTEM_FIELDS = frozenset({"marketoGUID", "createdAt", "updatedAt"})

#: The seed's logical names, as transform emits them (the sink maps them to what it discovers).
ENGAGEMENT_OBJECT = seed.ENGAGEMENT_OBJECT_API_NAME
POLLS_OBJECT = seed.POLLS_OBJECT_API_NAME
ENGAGEMENT_ACTIVITY = seed.ENGAGEMENT_ACTIVITY_API_NAME
LOGICAL_OBJECTS: tuple[str, ...] = (ENGAGEMENT_OBJECT, POLLS_OBJECT)
#: The seed's fields per logical schema (what transform may send).
SEED_FIELDS: dict[str, tuple[seed.FieldSpec, ...]] = {
    ENGAGEMENT_OBJECT: seed.ENGAGEMENT_OBJECT_FIELDS,
    POLLS_OBJECT: seed.POLLS_OBJECT_FIELDS,
    ENGAGEMENT_ACTIVITY: seed.ENGAGEMENT_ACTIVITY_FIELDS,
}
#: The seed's link field to the lead (transform leaves it empty; the sink fills in the lead id).
SEED_LINK_FIELD = next(f.name for f in seed.ENGAGEMENT_OBJECT_FIELDS if f.data_type == "link")
#: Seed fields that identify the person of a record (one of them must be a dedupe field).
PERSON_FIELDS = frozenset({SEED_LINK_FIELD, "email", "user"})


@dataclass(frozen=True)
class FieldInfo:
    name: str
    data_type: str
    #: Characters for string-like types, bytes for text; None: no limit kmsync knows of.
    length: int | None = None
    updateable: bool = True

    @cached_property
    def limit(self) -> int | None:
        """Worked out once per field (shaping asks it for every value of every record, issue #22)."""
        if self.data_type in CHAR_LENGTH_TYPES:
            return self.length or STRING_DEFAULT_LENGTH
        if self.data_type == "text":
            return min(self.length or TEXT_MAX_BYTES, TEXT_MAX_BYTES)
        return None


@dataclass(frozen=True)
class ObjectSchema:
    """One custom object as the instance has it (approved version)."""

    logical: str
    api_name: str
    display_name: str
    fields: Mapping[str, FieldInfo]
    dedupe_fields: tuple[str, ...]
    #: The field linking a record to its lead, and what it points at ((object, field), e.g. Lead.id).
    link_field: str | None = None
    link_target: tuple[str, str] | None = None
    #: How it was found: "api name", "api name with _c", "api name without _c", "display name", "override".
    matched_by: str = "api name"

    def writable(self, name: str) -> FieldInfo | None:
        """The field kmsync writes for seed field ``name`` (the seed's link field maps to the link); each name
        worked out once per schema (shaping asks it for every field of every record, issue #22)."""
        known = self._writable
        if name in known:
            return known[name]
        found = known[name] = self._find_writable(name)
        return found

    @cached_property
    def _writable(self) -> dict[str, FieldInfo | None]:
        return {}

    def _find_writable(self, name: str) -> FieldInfo | None:
        if name == SEED_LINK_FIELD and self.link_field is not None:
            name = self.link_field
        f = self.fields.get(name)
        if f is None or name in SYSTEM_FIELDS:
            return None
        return f


@dataclass(frozen=True)
class ActivitySchema:
    logical: str
    api_name: str
    type_id: int
    name: str
    status: str
    primary: FieldInfo | None
    attributes: Mapping[str, FieldInfo]
    matched_by: str = "api name"


@dataclass
class InstanceSchema:
    """What discovery found; ``None`` for a schema the instance does not have."""

    activity: ActivitySchema | None = None
    objects: dict[str, ObjectSchema | None] = field(default_factory=dict)
    #: Reads that failed (schema name → reason), e.g. a 603 without the Custom Object permission.
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Shaped:
    """A record (or activity attributes) reduced to what the instance can take."""

    values: dict[str, Any]
    #: Seed fields dropped because the instance has no such field.
    omitted: tuple[str, ...] = ()
    #: (field, original length, written length) of strings cut to the field's length.
    truncated: tuple[tuple[str, int, int], ...] = ()

    def note(self) -> str | None:
        """The outcome note for a truncation (RecordOutcome.reason), None when nothing was cut."""
        if not self.truncated:
            return None
        cut = ", ".join(f"{name} from {n} to {m}" for name, n, m in self.truncated)
        return f"written with values cut to the field length in Marketo: {cut}"


# ------------------------------------------------------------------ pure: names
def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _base(name: str) -> str:
    return name[: -len(UI_SUFFIX)] if name.endswith(UI_SUFFIX) else name


def match_name(
    items: Sequence[Mapping[str, Any]], logical: str, *, name_key: str, display_key: str,
    override: str | None = None,
) -> tuple[Mapping[str, Any] | None, str]:
    """The item for ``logical``: an explicit ``override`` API name wins; else the API name as the
    seed spells it, with ``_c`` added, without ``_c``, then the display name (case, spaces and
    punctuation ignored). Returns (item or None, how it matched)."""
    by_name = {str(i.get(name_key)): i for i in items if i.get(name_key)}
    if override:
        return by_name.get(override), "override"
    base = _base(logical)
    for candidate, how in ((logical, "api name"), (base + UI_SUFFIX, "api name with _c"),
                           (base, "api name without _c")):
        if candidate in by_name:
            return by_name[candidate], how
    wanted = _norm(base)
    for item in items:
        shown = str(item.get(display_key) or "")
        if shown and (_norm(shown) == wanted or _norm(_base(shown)) == wanted):
            return item, "display name"
    return None, "not found"


def _field_info(row: Mapping[str, Any], name_key: str = "name") -> FieldInfo | None:
    name = row.get(name_key)
    if not name:
        return None
    length = row.get("length")
    return FieldInfo(str(name), str(row.get("dataType") or "string").lower(),
                     int(length) if isinstance(length, int | float) and length > 0 else None,
                     bool(row.get("updateable", True)))


def object_schema(logical: str, described: Mapping[str, Any], matched_by: str) -> ObjectSchema:
    """Parse a custom object describe (§8.1) into an ObjectSchema."""
    fields: dict[str, FieldInfo] = {}
    for row in described.get("fields") or []:
        if isinstance(row, Mapping) and (info := _field_info(row)) is not None:
            fields[info.name] = info
    dedupe = tuple(str(x) for x in described.get("dedupeFields") or [])
    link_field: str | None = None
    link_target: tuple[str, str] | None = None
    for rel in described.get("relationships") or []:
        if not isinstance(rel, Mapping):
            continue
        target = rel.get("relatedTo") or rel.get("object") or {}  # §11: "object" in one example
        if isinstance(target, Mapping) and str(target.get("name", "")).lower() == "lead":
            link_field = str(rel.get("field"))
            link_target = ("Lead", str(target.get("field") or "id"))
            break
    if link_field is None:
        link_field = next((f.name for f in fields.values() if f.data_type == "link"), None)
        link_target = ("Lead", "id") if link_field else None
    return ObjectSchema(logical, str(described.get("name") or described.get("apiName") or logical),
                        str(described.get("displayName") or ""), fields, dedupe, link_field, link_target,
                        matched_by)


def activity_schema(logical: str, described: Mapping[str, Any], matched_by: str) -> ActivitySchema:
    """Parse a custom activity type describe (§7.2) into an ActivitySchema."""
    attrs: dict[str, FieldInfo] = {}
    for row in described.get("attributes") or []:
        if isinstance(row, Mapping) and (info := _field_info(row, "apiName")) is not None:
            attrs[info.name] = info
    primary_row = described.get("primaryAttribute")
    primary = _field_info(primary_row, "apiName") if isinstance(primary_row, Mapping) else None
    return ActivitySchema(logical, str(described.get("apiName") or logical), int(described.get("id") or 0),
                          str(described.get("name") or ""), str(described.get("status") or ""), primary, attrs,
                          matched_by)


# ------------------------------------------------------------------ pure: the dedupe rule
def dedupe_problem(obj: ObjectSchema) -> str | None:
    """Why writing this object would lose data, with what to change in Marketo; None when safe.

    kmsync writes one record per person and session (entry). A dedupe key without the entry makes
    every session of a person overwrite one record; one without a field naming the person (the
    lead link, email or user) makes every attendee of a session overwrite one record (the seed
    marks only entry_id "Primary"). A dedupe field kmsync has no value for would skip every record.
    Dedupe fields cannot be changed once the object is approved (§8.3), hence the fix."""
    known = {f.name for f in SEED_FIELDS.get(obj.logical, ())}
    person = set(PERSON_FIELDS)
    if obj.link_field:
        known.add(obj.link_field)
        person.add(obj.link_field)
    fix = (f"in Admin > Marketo Custom Objects, delete and recreate {obj.api_name!r} with dedupe fields "
           f"{' + '.join(_wanted_dedupe(obj))} (dedupe fields cannot be changed after approval), then replay "
           "the dead letters with `kmsync dlq replay`")
    dedupe = set(obj.dedupe_fields)
    if not dedupe:
        return f"custom object {obj.api_name!r} has no dedupe fields; {fix}"
    unknown = sorted(dedupe - known)
    if unknown:
        return (f"custom object {obj.api_name!r} is deduplicated by {', '.join(unknown)}, which kmsync has no "
                f"value for, so every record would be skipped; {fix}")
    if seed.PRIMARY_FIELD not in dedupe:
        return (f"custom object {obj.api_name!r} is deduplicated by {' + '.join(obj.dedupe_fields)} without "
                f"{seed.PRIMARY_FIELD}: every session of a person would overwrite one record; {fix}")
    if not dedupe & person:
        return (f"custom object {obj.api_name!r} is deduplicated by {' + '.join(obj.dedupe_fields)} only: every "
                f"attendee of a session would overwrite one record; {fix}")
    return None


def _wanted_dedupe(obj: ObjectSchema) -> tuple[str, ...]:
    if obj.logical == ENGAGEMENT_OBJECT:
        return (seed.PRIMARY_FIELD, obj.link_field or SEED_LINK_FIELD)
    return seed.POLLS_OBJECT_DEDUPE_FIELDS


# ------------------------------------------------------------------ pure: record shaping
def cut(value: Any, info: FieldInfo) -> tuple[Any, int | None]:
    """``value`` within the field's length (characters for strings, UTF-8 bytes for text, §5.3);
    returns (value, original length when it was cut)."""
    limit = info.limit
    if limit is None or not isinstance(value, str):
        return value, None
    if info.data_type == "text":
        if len(value) * 4 <= limit:  # a character is at most 4 UTF-8 bytes: fits, without encoding it
            return value, None
        raw = value.encode()
        if len(raw) <= limit:
            return value, None
        return raw[:limit].decode(errors="ignore"), len(raw)
    if len(value) <= limit:
        return value, None
    return value[:limit], len(value)


def _shape(values: Mapping[str, Any], lookup: Any) -> Shaped:
    out: dict[str, Any] = {}
    omitted: list[str] = []
    truncated: list[tuple[str, int, int]] = []
    for name, value in values.items():
        info: FieldInfo | None = lookup(name)
        if info is None:
            omitted.append(name)
            continue
        limit = info.limit
        # ``cut`` only where it may cut: a value that is no string, a field without a limit, or a string
        # within a character limit stays as it is (most values of most records; issue #22).
        if limit is None or not isinstance(value, str) or (len(value) <= limit and info.data_type != "text"):
            out[info.name] = value
            continue
        new, before = cut(value, info)
        if before is not None:
            written = len(new.encode()) if info.data_type == "text" else len(new)
            truncated.append((info.name, before, written))
        out[info.name] = new
    return Shaped(out, tuple(omitted), tuple(truncated))


def shape_record(obj: ObjectSchema, record: Mapping[str, Any]) -> Shaped:
    """A custom object record in seed names → the instance's names, only existing fields, strings
    cut to length. The seed's link field (personId) is written to the object's link field."""
    return _shape(record, obj.writable)


def shape_attributes(activity: ActivitySchema, attributes: Mapping[str, Any]) -> Shaped:
    """Custom activity attributes → only the type's existing secondary attributes, cut to length."""
    return _shape(attributes, activity.attributes.get)


def cut_primary(activity: ActivitySchema, value: str) -> str:
    if activity.primary is None:
        return value
    new, _ = cut(value, activity.primary)
    return str(new)


def omitted_fields(logical: str, found: ObjectSchema | ActivitySchema) -> tuple[str, ...]:
    """Seed fields the instance does not have (kmsync omits them; never a failure)."""
    out: list[str] = []
    for spec in SEED_FIELDS.get(logical, ()):
        if isinstance(found, ObjectSchema):
            present = found.writable(spec.name) is not None
        else:
            present = spec.name in found.attributes or (found.primary is not None
                                                        and found.primary.name == spec.name)
        if not present:
            out.append(spec.name)
    return tuple(out)


def written_fields(logical: str, found: ObjectSchema | ActivitySchema) -> tuple[str, ...]:
    gone = set(omitted_fields(logical, found))
    return tuple(s.name for s in SEED_FIELDS.get(logical, ()) if s.name not in gone)


# ------------------------------------------------------------------ discovery (reads)
@runtime_checkable
class SchemaReader(Protocol):
    """The reads discovery needs (kmsync_marketo.client.MarketoClient has them)."""

    async def custom_objects(self) -> list[dict[str, Any]]: ...

    async def describe_custom_object(self, api_name: str) -> dict[str, Any] | None: ...

    async def custom_activity_types(self) -> list[dict[str, Any]]: ...

    async def describe_custom_activity_type(self, api_name: str, *, draft: bool = False
                                            ) -> dict[str, Any] | None: ...


async def discover_objects(
    reader: SchemaReader, overrides: Mapping[str, str] | None = None,
) -> tuple[dict[str, ObjectSchema | None], dict[str, str]]:
    """Both custom objects (approved versions): one list call and one describe per object found.
    A list refused with a permanent error (603: the API user's role lacks the permission; 616/1026:
    no custom objects in the subscription) comes back in the errors (schema → reason) and the
    objects count as absent; transient errors raise (``MarketoError``) so the caller retries."""
    overrides = overrides or {}
    errors: dict[str, str] = {}
    try:
        listed = await reader.custom_objects()
    except MarketoApiError as exc:
        if exc.error_class is not ErrorClass.PERMANENT:
            raise
        listed = []
        for logical in LOGICAL_OBJECTS:
            errors[logical] = f"custom objects could not be listed: {exc.code} {exc.message}"
    objects: dict[str, ObjectSchema | None] = {}
    for logical in LOGICAL_OBJECTS:
        item, how = match_name(listed, logical, name_key="name", display_key="displayName",
                               override=overrides.get(logical))
        found: ObjectSchema | None = None
        if item is not None:
            described = await reader.describe_custom_object(str(item["name"]))
            if described is not None:
                found = object_schema(logical, described, how)
        objects[logical] = found
    return objects, errors


async def discover_activity(
    reader: SchemaReader, override: str | None = None,
) -> tuple[ActivitySchema | None, str | None]:
    """The custom activity type (approved version): the types list and one describe (§7.2)."""
    try:
        types = await reader.custom_activity_types()
    except MarketoApiError as exc:
        if exc.error_class is not ErrorClass.PERMANENT:
            raise
        return None, f"activity types could not be listed: {exc.code} {exc.message}"
    item, how = match_name(types, ENGAGEMENT_ACTIVITY, name_key="apiName", display_key="name", override=override)
    if item is None or item.get("status") == "draft":
        return None, None
    described = await reader.describe_custom_activity_type(str(item["apiName"]))
    if described is None:
        return None, None
    return activity_schema(ENGAGEMENT_ACTIVITY, {**item, **described}, how), None


async def discover_schema(reader: SchemaReader, overrides: Mapping[str, str] | None = None) -> InstanceSchema:
    """Everything: at most 5 calls (two lists, one describe per schema found)."""
    overrides = overrides or {}
    objects, errors = await discover_objects(reader, overrides)
    activity, error = await discover_activity(reader, overrides.get(ENGAGEMENT_ACTIVITY))
    if error:
        errors[ENGAGEMENT_ACTIVITY] = error
    return InstanceSchema(activity, objects, errors)
