"""Usage statistics (docs/reference/marketo-api.md §2.1 "Usage endpoints")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .call import Call
from .limits import central_day


def _usage_day(call: Call, offset: int) -> dict[str, Any]:
    day = central_day(call.now) - timedelta(days=offset)
    users: dict[str, int] = dict(call.inst.usage.get(day, {}))
    return {"date": day.isoformat(), "total": sum(users.values()),
            "users": [{"userId": u, "count": n} for u, n in sorted(users.items())]}


def _errors_day(call: Call, offset: int) -> dict[str, Any]:
    day = central_day(call.now) - timedelta(days=offset)
    codes: dict[str, int] = dict(call.inst.error_usage.get(day, {}))
    return {"date": day.isoformat(), "total": sum(codes.values()),
            "errors": [{"errorCode": c, "count": n} for c, n in sorted(codes.items())]}


def usage(call: Call) -> dict[str, Any]:
    return {"result": [_usage_day(call, 0)]}


def usage_last7(call: Call) -> dict[str, Any]:
    return {"result": [_usage_day(call, i) for i in range(7)]}


def errors(call: Call) -> dict[str, Any]:
    return {"result": [_errors_day(call, 0)]}


def errors_last7(call: Call) -> dict[str, Any]:
    return {"result": [_errors_day(call, i) for i in range(7)]}
