"""A REST read-back that can stop and continue (`kmsync reconcile --resume FILE`, issue #19).

Every answer Marketo gives the read-back is kept in FILE (written after each call, atomically), so a
read-back that stops — its call budget spent, Ctrl-C, Marketo unreachable — continues when it is run
again with the same FILE: calls already answered are replayed from the file and cost nothing; only
new calls count against ``--max-calls``. So a large event can be reconciled over several days, each
run within the share of the daily quota the operator gives it. The answers are Marketo's state when
they were read; delete FILE to read everything afresh. FILE holds the people's emails as Marketo
answered them, so it is readable by its owner only (0600).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kmsync_marketo import readback as rb
from kmsync_marketo.transport import MarketoTransport


class ResumableBudget(rb.ReadBudget):
    """Counts new calls only, and never refuses up front: what the file holds may cover the estimate."""

    def require(self, calls: int) -> None:
        return None

    def refund(self) -> None:
        self.used -= 1


def call_key(method: str, path: str, params: dict[str, Any] | None, data: dict[str, Any] | None,
             json_body: Any) -> str:
    """The identity of one read call (its method, path, query, form and JSON body)."""
    text = json.dumps([method, path, params or {}, data or {}, json_body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spent_before_call(method: str, path: str, params: dict[str, Any] | None) -> bool:
    """The calls kmsync_marketo.readback counts before it makes them (leads, program members, custom
    objects: ``ReadBudget.spend``); the others it counts from the limiter after they ran."""
    return (params or {}).get("_method") == "GET" or (method == "GET" and path.endswith("/members.json"))


class ReplayingTransport:
    """A client's transport whose answers are kept in a file and replayed from it (the rest is the
    wrapped transport: limiter, token, close)."""

    def __init__(self, inner: MarketoTransport, file: Path, budget: ResumableBudget) -> None:
        self._inner, self._file, self._budget = inner, file, budget
        self.answers: dict[str, dict[str, Any]] = json.loads(file.read_text()) if file.exists() else {}
        self.replayed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                   data: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        key = call_key(method, path, params, data, json)
        if key in self.answers:
            self.replayed += 1
            if spent_before_call(method, path, params):
                self._budget.refund()
            return self.answers[key]
        body = await self._inner.call(method, path, params=params, json=json, data=data, **kwargs)
        self.answers[key] = body
        self._save()
        return body

    def _save(self) -> None:
        tmp = self._file.with_name(self._file.name + ".tmp")
        tmp.touch(mode=0o600)  # Marketo's answers name the people by email: readable by this user only
        tmp.chmod(0o600)
        tmp.write_text(json.dumps(self.answers, separators=(",", ":")))
        os.replace(tmp, self._file)

