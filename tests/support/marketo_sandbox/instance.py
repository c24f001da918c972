"""One simulated Marketo instance (a munchkin id): its config, stored records, tokens, limits and counters."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import preset_kaltura
from .config import BehaviourConfig, ClientCredentials, InstanceConfig, LimitsConfig
from .envelope import Ids
from .faults import LATENCY_KIND
from .fields import STANDARD_LEAD_FIELDS, LeadField, custom_lead_field
from .limits import DailyQuota, RateWindow, central_day
from .member_field_defs import MemberField, add_member_field
from .model import Activity, ActivityType, Channel, CORecord, COType, ImportJob, Lead, Member, Program


@dataclass
class Token:
    value: str
    client_id: str
    issued: float
    expires_at: float
    expiry_reported: bool = False
    # Its end was injected: a life from the fault plan's token_ttl_seconds, or a forced/admin expiry.
    injected: bool = False


class TokenStore:
    """Identity tokens keyed by client id (docs/reference/marketo-api.md §1.2)."""

    def __init__(self) -> None:
        self.by_value: dict[str, Token] = {}
        self.current: dict[str, Token] = {}

    def issue(self, client_id: str, now: float, ttl: float, ids: Ids, pod: str, injected_ttl: bool = False) -> Token:
        cur = self.current.get(client_id)
        if cur is not None and now < cur.expires_at:
            return cur  # same token while valid, with its remaining life
        tok = Token(value=ids.token(pod), client_id=client_id, issued=now, expires_at=now + ttl,
                    injected=injected_ttl)
        self.by_value[tok.value] = tok
        self.current[client_id] = tok
        return tok

    def check(self, value: str, now: float) -> tuple[Token | None, str | None]:
        """→ (token, None) when valid, else (None, "601"|"602"). 602 once per expired token, then 601."""
        tok = self.by_value.get(value)
        if tok is None:
            return None, "601"
        if now >= tok.expires_at:
            if not tok.expiry_reported:
                tok.expiry_reported = True
                return None, "602"
            return None, "601"
        return tok, None

    def expired_by_injection(self, value: str) -> bool:
        """Whether a token that failed ``check`` ran out because of the fault plan or an admin expiry."""
        tok = self.by_value.get(value)
        return tok is not None and tok.injected

    def expire_all(self, now: float) -> int:
        """Expire every token issued by ``now`` and still valid then; returns how many."""
        n = 0
        for tok in self.by_value.values():
            if tok.expires_at > now and tok.issued <= now:
                tok.expires_at = now
                tok.injected = True
                n += 1
        return n


class Instance:
    def __init__(self, config: InstanceConfig, ids: Ids, now: float) -> None:
        self.config = config
        self.ids = ids
        self.munchkin_id = config.munchkin_id
        self.clients: dict[str, ClientCredentials] = {c.client_id: c for c in config.clients}
        self.token_ttl = config.token_ttl_seconds
        self.tokens = TokenStore()
        self.in_flight = 0
        # Next forced token expiry (FaultConfig.token_expire_every_seconds); the Sandbox schedules it.
        self.next_forced_expiry: float | None = None
        self.reset(now)

    @property
    def limits(self) -> LimitsConfig:
        return self.config.limits

    @property
    def behaviour(self) -> BehaviourConfig:
        return self.config.behaviour

    def reset(self, now: float) -> None:
        """Forget every record, counter and token; re-provision the preset."""
        lim = self.config.limits
        self.rate = RateWindow(lim.rate_limit, lim.rate_window_seconds)
        self.quota = DailyQuota(lim.daily_quota)
        self.tokens = TokenStore()
        self.lead_fields: dict[str, LeadField] = {f.name: f for f in STANDARD_LEAD_FIELDS}
        for i, cf in enumerate(self.config.lead_fields):
            self.lead_fields[cf.name] = custom_lead_field(cf.name, cf.display_name, cf.data_type, cf.length,
                                                          1000 + i)
        self.leads: dict[int, Lead] = {}
        self._email_index: dict[str, set[int]] = {}
        self._indexed_leads = 0
        self.co_index: dict[str, dict[tuple[Any, ...], str]] = {}
        self.channels: dict[str, Channel] = {}
        self.programs: dict[int, Program] = {}
        self.members: dict[tuple[int, int], Member] = {}
        #: Custom program member fields (api_member_fields.py, docs/reference/marketo-api.md §13).
        self.member_fields: dict[str, MemberField] = {}
        self.activity_types: dict[str, ActivityType] = {}
        self.activities: list[Activity] = []
        self.co_types: dict[str, COType] = {}
        self.co_records: dict[str, dict[str, CORecord]] = {}
        self.jobs: dict[int, ImportJob] = {}
        self.status_changes: list[dict[str, Any]] = []
        self.calls: Counter[tuple[str, str]] = Counter()
        self.calls_by_client: Counter[tuple[str, str, str]] = Counter()
        # Faults delivered to clients, by (endpoint, kind). Installing a fault plan never clears these.
        self.faults_injected: Counter[tuple[str, str]] = Counter()
        self.forced_expiry_rounds = 0
        self.tokens_force_expired = 0
        self.usage: dict[date, Counter[str]] = defaultdict(Counter)
        self.error_usage: dict[date, Counter[str]] = defaultdict(Counter)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=5000)
        self._next = {"lead": 1, "activity": 1, "channel": 100, "program": 2000, "activity_type": 100100,
                      "batch": 1}
        if self.config.preset == "kaltura":
            self._provision_kaltura(now)
        for mf in self.config.member_fields:
            add_member_field(self.member_fields, mf.name, mf.display_name or mf.name, mf.data_type, mf.length)

    def next_id(self, kind: str) -> int:
        v = self._next[kind]
        self._next[kind] = v + 1
        return v

    def _provision_kaltura(self, now: float) -> None:
        ch = preset_kaltura.channel(now)
        self.channels[ch.name] = ch
        prog = preset_kaltura.program(now)
        self.programs[prog.id] = prog
        at = preset_kaltura.activity_type(now)
        self.activity_types[at.api_name] = at
        for co in (preset_kaltura.engagement_co(now), preset_kaltura.polls_co(now)):
            self.co_types[co.api_name] = co
            self.co_records[co.api_name] = {}
        for name, display_name, data_type, length in preset_kaltura.MEMBER_FIELDS:
            add_member_field(self.member_fields, name, display_name, data_type, length)

    # ---- leads, with an email index (lookups by email are the common case) ---------------------

    def email_key(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        text = str(value).strip()
        return text.lower() if self.behaviour.email_case_insensitive else text

    def _reindex_if_stale(self) -> None:
        # O(1) check: leads added or removed behind our back (directly in ``leads``) force a rebuild.
        if self._indexed_leads != len(self.leads):
            self._email_index = {}
            self._indexed_leads = len(self.leads)
            for ld in self.leads.values():
                key = self.email_key(ld.values.get("email"))
                if key is not None:
                    self._email_index.setdefault(key, set()).add(ld.id)

    def leads_by_email(self, value: Any) -> list[Lead]:
        key = self.email_key(value)
        if key is None:
            return []
        self._reindex_if_stale()
        return sorted((self.leads[i] for i in self._email_index.get(key, ()) if i in self.leads),
                      key=lambda ld: ld.id)

    def add_lead(self, values: dict[str, Any], now: float) -> Lead:
        self._reindex_if_stale()
        lead = Lead(id=self.next_id("lead"), values=dict(values), created=now, updated=now)
        self.leads[lead.id] = lead
        self._indexed_leads += 1
        key = self.email_key(lead.values.get("email"))
        if key is not None:
            self._email_index.setdefault(key, set()).add(lead.id)
        return lead

    def update_lead(self, lead: Lead, values: dict[str, Any], now: float) -> None:
        old = self.email_key(lead.values.get("email"))
        lead.values.update(values)
        lead.updated = now
        new = self.email_key(lead.values.get("email"))
        if old != new:
            if old is not None:
                self._email_index.get(old, set()).discard(lead.id)
            if new is not None:
                self._email_index.setdefault(new, set()).add(lead.id)

    def remove_lead(self, lead_id: int) -> None:
        self._reindex_if_stale()
        lead = self.leads.pop(lead_id)
        self._indexed_leads -= 1
        key = self.email_key(lead.values.get("email"))
        if key is not None:
            self._email_index.get(key, set()).discard(lead_id)

    # ---- counters -------------------------------------------------------------------------------

    def record_call(self, endpoint: str, code: str, client_id: str | None, counted: bool, now: float) -> None:
        self.calls[(endpoint, code)] += 1
        if client_id:
            self.calls_by_client[(client_id, endpoint, code)] += 1
        if counted:
            day = central_day(now)
            scope = self.clients[client_id].scope if client_id in self.clients else "unknown"
            self.usage[day][scope] += 1
            if code not in ("200",):
                self.error_usage[day][code] += 1

    def record_fault(self, endpoint: str, kind: str) -> None:
        self.faults_injected[(endpoint, kind)] += 1

    def faults_summary(self) -> dict[str, Any]:
        by_kind: Counter[str] = Counter()
        by_endpoint: dict[str, dict[str, int]] = defaultdict(dict)
        for (ep, kind), n in sorted(self.faults_injected.items()):
            by_kind[kind] += n
            by_endpoint[ep][kind] = n
        return {
            "munchkinId": self.munchkin_id,
            "total": sum(n for kind, n in by_kind.items() if kind != LATENCY_KIND),
            "by_kind": dict(sorted(by_kind.items())),
            "by_endpoint": dict(by_endpoint),
            "forced_token_expiry": {"rounds": self.forced_expiry_rounds, "tokens": self.tokens_force_expired},
        }

    def calls_summary(self) -> dict[str, Any]:
        by_endpoint: dict[str, dict[str, int]] = defaultdict(dict)
        for (ep, code), n in sorted(self.calls.items()):
            by_endpoint[ep][code] = n
        by_client: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
        for (cid, ep, code), n in sorted(self.calls_by_client.items()):
            by_client[cid][ep][code] = n
        return {
            "total": sum(self.calls.values()),
            "by_endpoint": dict(by_endpoint),
            "by_client": {k: dict(v) for k, v in by_client.items()},
        }

    def call_count(self, endpoint: str | None = None, code: str | None = None) -> int:
        return sum(
            n for (ep, c), n in self.calls.items()
            if (endpoint is None or ep == endpoint) and (code is None or c == code)
        )

    # ---- lookups --------------------------------------------------------------------------------

    def activity_type_by_id(self, type_id: int) -> ActivityType | None:
        for t in self.activity_types.values():
            if t.id == type_id and not t.deleted:
                return t
        return None

    def channel_for(self, program: Program) -> Channel | None:
        return self.channels.get(program.channel)
