"""`kmsync reconcile --resume FILE`: a REST read-back that stops on its call budget continues where it
stopped, and answers already read cost no call (issue #19). Against the Marketo sandbox over HTTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from kmsync_cli.reconcile_rest import ExternalMarketo, reconcile_over_rest
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.readback import ReadBudgetExceeded
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_MUNCHKIN_ID
from marketo_sandbox.shape import PARTIAL_PROGRAM_ID, kaltura_partial_shape
from marketo_sandbox.testing import running_sandbox

PEOPLE, ENTRIES = ["a@x.com", "b@x.com", "c@x.com"], ["1_a", "1_b"]
TRUTH: dict[str, Any] = {
    "origin": "2026-03-02T10:00:00Z",
    "attendees": [{"email": e, "final_status": "registered", "transitions": None} for e in PEOPLE],
    "engagement": [{"entry_id": x, "email": e} for e in PEOPLE for x in ENTRIES],
    "poll_answers": [],
}


async def test_a_stopped_read_back_continues_and_never_reads_an_answer_twice(tmp_path: Path) -> None:
    async with running_sandbox(preset="empty") as sb:
        sb.shape(kaltura_partial_shape())
        settings = ExternalMarketo(sb.base_url, DEFAULT_MUNCHKIN_ID, DEFAULT_CLIENT_ID,
                                   SecretStr(DEFAULT_CLIENT_SECRET), PARTIAL_PROGRAM_ID).settings(share=1.0)
        async with MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry()) as mc:
            ids = (await mc.sync_leads([{"email": e} for e in PEOPLE])).lead_ids
            await mc.sync_program_member_status(PARTIAL_PROGRAM_ID, "Registered", list(ids.values()))
            await mc.sync_custom_objects("kalturaUserSessionEngagement_c", [
                {"entry_id": x, "personId": ids[e]} for e in PEOPLE for x in ENTRIES])
        fresh, fresh_calls = await reconcile_over_rest(settings, TRUTH, PARTIAL_PROGRAM_ID)
        # (no activities were written: the table says so, the same way in every run below)

        file = tmp_path / "readback.json"
        with pytest.raises(ReadBudgetExceeded):
            await reconcile_over_rest(settings, TRUTH, PARTIAL_PROGRAM_ID, max_calls=2, resume=file)
        kept = len(json.loads(file.read_text()))
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, "it holds emails"
        assert kept >= 2, "what was read before the budget ran out is kept"
        second, new_calls = await reconcile_over_rest(settings, TRUTH, PARTIAL_PROGRAM_ID, max_calls=fresh_calls,
                                                      resume=file)
        assert second.report() == fresh.report()
        assert new_calls <= fresh_calls - 2, (new_calls, fresh_calls)
        before = sb.call_count()
        again, calls = await reconcile_over_rest(settings, TRUTH, PARTIAL_PROGRAM_ID, max_calls=1, resume=file)
        assert again.report() == fresh.report() and calls == 0, "everything is in the file: no call spent"
        assert sb.call_count() - before <= 1, "at most a token, no read"
