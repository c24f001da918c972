"""The API-only user's permission set (its API role): which endpoints a client may call.

docs/reference/marketo-api.md §3.2: ``603 Access denied`` means "the role lacks permission". The sections name the
permission each call needs: Sync Leads and Sync Program Member Status "Read-Write Lead" (§5.1, §6.2;
the seed calls the area "Person"), Add Custom Activities "Read-Write Activity" (§7.1), activity
types "Read/Read-Write Activity Metadata" (§7.2), custom object describe "Read-Only Custom Object"
and sync "Read-Write Custom Object" (§8.1, §8.2), custom object types "Read-Write Custom Object
Type" (§8.3), bulk imports "Read-Write Lead / Read-Write Custom Object" (§9). Areas the reference
does not name for an endpoint (Asset reads, usage stats) are assigned by analogy (UNCONFIRMED):
Asset API → Assets, usage → none.

A client whose ``permissions`` is None has every permission (the default). A "Read-Write X"
permission grants reads and writes of area X, "Read-Only X" reads only.
"""

from __future__ import annotations

from typing import Final

AREAS: Final = ("Person", "Activity", "Activity Metadata", "Assets", "Campaigns", "Custom Object",
                "Custom Object Type", "Schema Custom Field")
PERMISSIONS: Final = frozenset(f"{mode} {area}" for area in AREAS for mode in ("Read-Only", "Read-Write"))

#: (area, write) needed by a route, by path prefix; the first match wins (most specific first).
_RULES: tuple[tuple[str, str, str | None], ...] = (
    # (method or "*", path prefix, area)
    ("*", "/rest/v1/customobjects/schema", "Custom Object Type"),
    # Get / Create program member fields: Read-Write Schema Custom Field (docs/reference/marketo-api.md §13.2, §13.7)
    ("*", "/rest/v1/programs/members/schema", "Schema Custom Field"),
    ("*", "/rest/v1/customobjects", "Custom Object"),
    ("*", "/bulk/v1/customobjects", "Custom Object"),
    ("*", "/rest/v1/activities/external/type", "Activity Metadata"),
    ("GET", "/rest/v1/activities/external/types.json", "Activity Metadata"),
    ("*", "/rest/v1/activities", "Activity"),
    ("*", "/rest/asset/", "Assets"),
    ("*", "/rest/v1/campaigns", "Campaigns"),
    ("*", "/rest/v1/stats/", None),
    ("*", "/rest/v1/", "Person"),  # leads, lead fields, program members
    ("*", "/bulk/v1/", "Person"),  # lead and program member imports
)

def required(method: str, template: str) -> tuple[str, bool] | None:
    """(area, needs write) for an endpoint template, None when no permission is needed."""
    for rule_method, prefix, area in _RULES:
        if (rule_method == "*" or rule_method == method) and template.startswith(prefix):
            if area is None:
                return None
            return area, method != "GET"
    return None


def allowed(permissions: list[str] | None, method: str, template: str) -> bool:
    if permissions is None:
        return True
    need = required(method, template)
    if need is None:
        return True
    area, write = need
    if f"Read-Write {area}" in permissions:
        return True
    return not write and f"Read-Only {area}" in permissions
