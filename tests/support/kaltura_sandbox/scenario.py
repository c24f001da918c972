"""Scenario generator: a realistic Kaltura virtual event, fully determined by (config, seed).

Pure: no I/O, no wall clock, no global random state. ``generate(config, seed)`` returns the whole
event up front - sessions, registrants with their complete status histories, per-session engagement
rows, polls and poll answers, each stamped with the scenario time at which Kaltura would show it.
The sandbox then *plays* it: what an API call sees depends only on the scenario clock.

Realism (docs/reference/kaltura-api.md §4.2, §3.4, seed document):
* registrants move through invited → invitedPendingRegistration → registered → confirmed /
  autoConfirmed → attended → participated (→ participatedPostEvent); some unregister, some are
  blocked, a few unregistered profiles are then soft-deleted; bulk invitations share a timestamp
  (ties that an inclusive ``updatedAt`` watermark must cope with);
* attendees watch some sessions live; participants interact (reactions, chat, Q&A, polls, raise
  hand, mic/cam); a few non-attendees watch the recording after the event (participatedPostEvent);
* up to 10 polls per session of the visual types the seed document names; a participant's
  ``answered_polls`` equals the number of poll-answer rows it has for that session;
* emails in mixed case; a few unusable emails and a few damaged rows, each labelled with its
  defect so end-to-end tests know which records must be rejected;
* analytics lag: rows become visible after the session ends plus a lag; a few arrive much later.
"""

from __future__ import annotations

import dataclasses
import json
import random
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from kaltura_sandbox.config import ScenarioConfig
from kaltura_sandbox.statuses import REGISTERED_STATES

_T = TypeVar("_T")
#: Appends a status transition to a registrant's history (keeping times strictly increasing).
_Add = Callable[[str, datetime], datetime]

# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Session:
    entry_id: str
    name: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    status: str
    at: datetime


@dataclass(slots=True)
class Registrant:
    index: int
    user_id: str
    #: The Kaltura user's email as stored (mixed case); None when the user has none.
    email: str | None
    #: Why the email is unusable (missing / malformed), None when it is fine.
    email_defect: str | None
    first_name: str
    last_name: str
    title: str
    company: str
    country: str
    role: str
    industry: str
    reg_origin: str
    login_type: str
    profile_id: str
    transitions: list[Transition] = field(default_factory=list)
    deleted_at: datetime | None = None
    #: The registration form's answers (profileData key → answer); questions left blank are absent.
    form: dict[str, str] = field(default_factory=dict)

    @property
    def created_at(self) -> datetime:
        return self.transitions[0].at

    @property
    def final_status(self) -> str:
        return self.transitions[-1].status


@dataclass(frozen=True, slots=True)
class Poll:
    entry_id: str
    poll_id: str
    #: 1..10: the slot the seed document's kalturaUserPolls_c object gives it (poll_<n>_*).
    index: int
    poll_type: str
    question: str
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PollAnswer:
    entry_id: str
    poll_id: str
    poll_index: int
    poll_type: str
    question: str
    user_id: str
    email: str | None
    answer: str
    answered_at: datetime
    available_at: datetime
    #: None, or why this row must be rejected ("missing_fields", "bad_email", "missing_email").
    defect: str | None


@dataclass(frozen=True, slots=True)
class EngagementFact:
    """One user's engagement in one session: the superset the 60013 and 4021 layouts draw from."""

    entry_id: str
    entry_name: str
    user_id: str
    email: str | None
    first_name: str
    last_name: str
    title: str
    company: str
    country: str
    role: str
    industry: str
    plays: int
    vod_minutes: float
    live_minutes: float
    total_minutes: float
    completion_rate: float
    engaged_ratio: float
    no_engagement_rate: float
    low_engagement_rate: float
    fair_engagement_rate: float
    good_engagement_rate: float
    high_engagement_rate: float
    clap: int
    heart: int
    think: int
    wow: int
    smile: int
    total_reactions: int
    raise_hand: int
    mic_on_minutes: float
    cam_on_minutes: float
    add_to_calendar: int
    download_attachment: int
    answered_polls: int
    messages_sent_group: int
    qna_threads: int
    viewed_from: datetime
    viewed_to: datetime
    available_at: datetime
    #: None, or why this row must be rejected:
    #: "bad_email", "missing_email", "missing_fields", "non_numeric".
    defect: str | None

    @property
    def interacted(self) -> bool:
        return (
            self.total_reactions + self.raise_hand + self.answered_polls + self.messages_sent_group
            + self.qna_threads > 0
            or self.mic_on_minutes > 0
            or self.cam_on_minutes > 0
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    config: ScenarioConfig
    seed: int
    admin_secret: str
    app_guid: str
    #: Scenario time zero: the first invitation can happen from here on.
    origin: datetime
    doors_open: datetime
    event_start: datetime
    event_end: datetime
    #: Nothing changes after this instant (every row available, every status final).
    end: datetime
    sessions: tuple[Session, ...]
    registrants: tuple[Registrant, ...]
    polls: tuple[Poll, ...]
    engagement: tuple[EngagementFact, ...]
    poll_answers: tuple[PollAnswer, ...]

    def session(self, entry_id: str) -> Session | None:
        return next((s for s in self.sessions if s.entry_id == entry_id), None)


# ------------------------------------------------------------------------------------- vocabulary

_FIRST: Final = (
    "Jane", "John", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Liam", "Noa", "Kenji", "Fatima", "Lars",
    "Priya", "Mateo", "Zoe", "Ahmed", "Ingrid", "Tomás", "Chloé", "Dmitri", "Ana", "Yuki", "Omar", "Elif",
    "Grace", "Hugo", "Isla", "Jonas", "Kira", "Leo", "Mina", "Nils", "Oscar", "Petra", "Rafael", "Sofia",
)
_LAST: Final = (
    "Doe", "Roe", "Smith", "Garcia", "Chen", "Okafor", "Müller", "Ivanova", "Tanaka", "Haddad", "Nielsen",
    "Patel", "Rossi", "Kowalski", "O'Brien", "Silva", "Dubois", "Nakamura", "Cohen", "Larsen", "Moreau",
    "Schmidt", "Novak", "Costa", "Yilmaz", "Berg", "Khan", "Lopez", "Meyer", "Sato",
)
_COMPANIES: Final = (
    ("Acme", "acme.com"), ("Globex", "globex.io"), ("Initech", "initech.com"), ("Umbrella", "umbrella.co"),
    ("Hooli", "hooli.xyz"), ("Stark Industries", "stark.com"), ("Wayne Enterprises", "wayne.com"),
    ("Soylent", "soylent.net"), ("Tyrell", "tyrell.ai"), ("Cyberdyne", "cyberdyne.org"),
    ("Vandelay Industries", "vandelay.com"), ("Wonka", "wonka.co.uk"), ("Aperture", "aperture.science"),
    ("Massive Dynamic", "massivedynamic.com"), ("Pied Piper", "piedpiper.com"),
)
_TITLES: Final = (
    "VP Marketing", "Director, Demand Gen", "Marketing Ops Manager", "CTO", "Engineer", "Product Manager",
    "Head of Events", "Sales Director", "Analyst", "CEO", "Content Strategist", "IT Manager",
)
_ROLES: Final = ("Executive", "Manager", "Individual Contributor", "Student", "Consultant")
_INDUSTRIES: Final = ("Software", "Healthcare", "Finance", "Education", "Manufacturing", "Media", "Retail")
#: The event's registration form beyond the standard fields (docs/reference/kaltura-api.md §10): profileData
#: key → the answers offered.
REGISTRATION_FORM: Final[dict[str, tuple[str, ...]]] = {
    "jobFunction": ("Marketing", "Sales", "Engineering", "IT", "Operations", "Executive Leadership"),
    "companySize": ("1-50", "51-200", "201-1000", "1001-5000", "5000+"),
    "howDidYouHear": ("Email", "LinkedIn", "Colleague", "Search", "Partner"),
}
#: The standard questions of the form, with the profileData key each answer is stored under.
STANDARD_QUESTIONS: Final = ("firstName", "lastName", "title", "company", "country")


def registration_form_schema() -> str:
    """The virtual event's ``registrationFormSchema``: a JSON-Schema string (KalturaVirtualEvent,
    docs/reference/kaltura-api.md §10) whose property names are the profileData keys the answers go to."""
    properties: dict[str, Any] = {key: {"type": "string"} for key in STANDARD_QUESTIONS}
    properties.update({key: {"type": "string", "enum": list(answers)} for key, answers in REGISTRATION_FORM.items()})
    return json.dumps({"type": "object", "properties": properties, "required": ["firstName", "lastName"]})


#: Shares of registrants who leave a question blank: title and company are optional on the form, and so
#: is each custom question.
BLANK_TITLE: Final = 0.2
BLANK_COMPANY: Final = 0.12
BLANK_FORM_ANSWER: Final = 0.25
_COUNTRIES: Final = (
    "United States", "Germany", "Israel", "United Kingdom", "France", "Japan", "Brazil", "India", "Canada",
)
_SESSION_NAMES: Final = (
    "Opening Keynote", "Product Roadmap 2026", "Customer Panel: Scaling Events", "Hands-on Lab: APIs",
    "Marketing Automation Deep Dive", "Security & Compliance", "Partner Showcase", "Closing Fireside Chat",
    "Analytics That Matter", "Live Q&A with the Founders",
)
_QUESTIONS: Final = (
    "How would you rate this session so far?", "Which topic should we cover next?",
    "Are you already using virtual events?", "How many events does your team run per year?",
    "What is your biggest challenge, in one sentence?", "Would you recommend this session to a colleague?",
    "Which feature are you most excited about?", "How confident are you in your data quality?",
    "What should we improve, and why?", "Did the demo answer your questions?",
    "Which region are you joining from?", "How likely are you to attend in person next year?",
)
#: The visual types the seed document names for poll_<n>_type, plus Kaltura's two content types
#: (docs/reference/kaltura-api.md §4.3: OptionsPoll, OpenAnswers; crowd vote, slider poll, rating scale).
_POLL_TYPES: Final = ("multiple choice", "crowd vote", "rating scale", "slider poll", "open answers")
_OPEN_ANSWERS: Final = (
    "More demos, please", "Great content, but too short", "Data quality, mostly duplicates",
    "Integrations with our CRM", "Nothing, it was perfect", "Budget, headcount, and time",
)
_BAD_EMAILS: Final = (None, "{first}.{last}(at){domain}", "{first}{last}@", "{first}@@{domain}")

_ORIGINS: Final = (("registration", 55), ("invite", 30), ("sso", 8), ("webhook", 5), ("admin", 2))


# -------------------------------------------------------------------------------------- generator


class _Gen:
    def __init__(self, config: ScenarioConfig, seed: int) -> None:
        self.c = config
        self.rng = random.Random(seed)
        self.seed = seed

    # -- small helpers -------------------------------------------------------------------------
    def ms(self, when: datetime) -> datetime:
        return when.replace(microsecond=(when.microsecond // 1000) * 1000)

    def between(self, lo: datetime, hi: datetime) -> datetime:
        """A random instant in (lo, hi]; if the window is empty, shortly after lo."""
        span = (hi - lo).total_seconds()
        if span <= 1.0:
            return self.ms(lo + timedelta(seconds=1 + self.rng.random() * 59))
        return self.ms(lo + timedelta(seconds=1 + self.rng.random() * (span - 1)))

    def hexid(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def entry_id(self) -> str:
        return "1_" + "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))

    def mixed_case(self, local: str, domain: str) -> str:
        style = self.rng.randrange(4)
        if style == 0:
            return f"{local.lower()}@{domain.lower()}"
        if style == 1:
            return f"{local}@{domain}"
        if style == 2:
            return f"{local}@{domain.upper()}"
        return f"{local.upper()}@{domain.capitalize()}"

    def fraction(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return round(lo + (hi - lo) * self.rng.random(), 4)

    # -- pieces --------------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        names = list(_SESSION_NAMES)
        self.rng.shuffle(names)
        out = []
        for i in range(self.c.sessions):
            start = self.c.event_start + timedelta(minutes=i * (self.c.session_minutes + self.c.break_minutes))
            name = names[i % len(names)] + ("" if i < len(names) else f", part {i // len(names) + 1}")
            out.append(Session(self.entry_id(), name, start, start + timedelta(minutes=self.c.session_minutes)))
        return out

    def polls(self, sessions: list[Session]) -> list[Poll]:
        out: list[Poll] = []
        cap = self.c.max_polls_per_session
        for n, s in enumerate(sessions):
            # The first session uses every slot, so consumers see the full 10-poll width.
            count = cap if n == 0 else self.rng.randint(min(3, cap), cap)
            for idx in range(1, count + 1):
                ptype = self.rng.choice(_POLL_TYPES)
                options: tuple[str, ...]
                if ptype == "multiple choice":
                    options = tuple(self.rng.sample(("Keynotes", "Labs", "Panels", "Roadmap", "Networking"), 3))
                elif ptype == "crowd vote":
                    options = ("Yes", "No")
                elif ptype == "rating scale":
                    options = ("1", "2", "3", "4", "5")
                elif ptype == "slider poll":
                    options = ("0", "100")
                else:
                    options = ()
                out.append(Poll(s.entry_id, self.hexid(24), idx, ptype, self.rng.choice(_QUESTIONS), options))
        return out

    def answer_for(self, poll: Poll) -> str:
        if poll.poll_type == "slider poll":
            return str(self.rng.randint(0, 100))
        if poll.poll_type == "open answers":
            return self.rng.choice(_OPEN_ANSWERS)
        return self.rng.choice(poll.options)

    def long_answer(self, answer: str, poll: Poll, user_id: str) -> str:
        """Now and then an open answer runs past the seed's 1,500 characters, from a stream of its own (so
        every other part of the scenario is what it was for the same seed)."""
        if poll.poll_type != "open answers":
            return answer
        rng = random.Random(f"{self.seed}:long-answer:{poll.poll_id}:{user_id}")
        if rng.random() >= self.c.long_answer_rate:
            return answer
        length = rng.randint(1_600, 2_400)
        words: list[str] = [answer]
        while sum(len(w) + 2 for w in words) < length:
            words.append(rng.choice(_OPEN_ANSWERS))
        return ". ".join(words)[:length].rstrip(" .")

    def person(self, index: int) -> Registrant:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        company, domain = self.rng.choice(_COMPANIES)
        plain = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore").decode()
        local = plain.replace("'", "").replace(" ", "") + str(index)
        email = self.mixed_case(local, domain)
        origin = self.rng.choices([o for o, _ in _ORIGINS], weights=[w for _, w in _ORIGINS])[0]
        user_id = email if origin != "sso" else "sso_" + self.hexid(16)
        login = "sso" if origin == "sso" else self.rng.choice(("magicLink", "emailPass", "magicLink"))
        r = Registrant(
            index=index, user_id=user_id, email=email, email_defect=None, first_name=first, last_name=last,
            title=self.rng.choice(_TITLES), company=company, country=self.rng.choice(_COUNTRIES),
            role=self.rng.choice(_ROLES), industry=self.rng.choice(_INDUSTRIES), reg_origin=origin,
            login_type=login, profile_id=self.hexid(24),
        )
        self.fill_form(r)
        return r

    def fill_form(self, r: Registrant) -> None:
        """What the registrant typed into the registration form, from a stream of its own (so every
        other part of the scenario is what it was for the same seed): some leave title, company or a
        custom question blank."""
        rng = random.Random(f"{self.seed}:registration-form:{r.index}")
        if rng.random() < BLANK_TITLE:
            r.title = ""
        if rng.random() < BLANK_COMPANY:
            r.company = ""
        for key, answers in REGISTRATION_FORM.items():
            if rng.random() >= BLANK_FORM_ANSWER:
                r.form[key] = rng.choice(answers)


def generate(config: ScenarioConfig, seed: int = 0) -> Scenario:
    """Build the whole scenario for ``config`` deterministically from ``seed``."""
    g = _Gen(config, seed)
    admin_secret = config.admin_secret or g.hexid(32)
    app_guid = config.app_guid or str(uuid.UUID(int=g.rng.getrandbits(128), version=4))
    tl, polls = _timeline(g)
    registrants: list[Registrant] = []
    engagement: list[EngagementFact] = []
    answers: list[PollAnswer] = []
    for i in range(config.registrants):
        r = g.person(i)
        _live(g, r, tl, engagement, answers)
        registrants.append(r)
    _soft_delete(g, registrants)
    _corrupt_emails(g, registrants, engagement, answers)
    engagement = _damage_engagement(g, engagement)
    answers = _damage_answers(g, answers)
    times = [t.at for r in registrants for t in r.transitions]
    times += [r.deleted_at for r in registrants if r.deleted_at]
    times += [e.available_at for e in engagement] + [a.available_at for a in answers] + [tl.post_end]
    return Scenario(
        config=config, seed=seed, admin_secret=admin_secret, app_guid=app_guid, origin=tl.origin,
        doors_open=tl.doors, event_start=tl.start, event_end=tl.event_end, end=max(times) + timedelta(seconds=1),
        sessions=tuple(tl.sessions), registrants=tuple(registrants), polls=tuple(polls),
        engagement=tuple(engagement), poll_answers=tuple(answers),
    )


@dataclass(frozen=True)
class _Timeline:
    """The event's fixed points that every registrant's story is drawn against."""

    origin: datetime
    start: datetime
    doors: datetime
    event_end: datetime
    post_end: datetime
    lag: timedelta
    late_lag: timedelta
    invite_batches: list[datetime]
    sessions: list[Session]
    polls_by_entry: dict[str, list[Poll]]


def _timeline(g: _Gen) -> tuple[_Timeline, list[Poll]]:
    config = g.c
    start = config.event_start
    origin = g.ms(start - timedelta(hours=config.registration_lead_hours))
    lead = start - origin
    sessions = g.sessions()
    event_end = sessions[-1].end
    polls = g.polls(sessions)
    polls_by_entry: dict[str, list[Poll]] = {}
    for p in polls:
        polls_by_entry.setdefault(p.entry_id, []).append(p)
    # Bulk invitations go out in a few batches that share one timestamp each.
    invite_batches = [g.ms(origin + lead * (0.02 + 0.08 * k)) for k in range(4)]
    return _Timeline(
        origin=origin, start=start, doors=start - timedelta(minutes=15), event_end=event_end,
        post_end=event_end + timedelta(hours=config.post_event_hours),
        lag=timedelta(seconds=config.report_lag_seconds), late_lag=timedelta(seconds=config.late_lag_seconds),
        invite_batches=invite_batches, sessions=sessions, polls_by_entry=polls_by_entry,
    ), polls


def _live(g: _Gen, r: Registrant, tl: _Timeline, engagement: list[EngagementFact],
          answers: list[PollAnswer]) -> None:
    """One registrant's story: registration, perhaps a cancellation, then attendance or the recording."""
    rng, config, hist = g.rng, g.c, r.transitions

    def add(status: str, at: datetime) -> datetime:
        if hist and at <= hist[-1].at:
            at = g.ms(hist[-1].at + timedelta(seconds=1 + rng.random() * 30))
        hist.append(Transition(status, at))
        return at

    t = _register(g, r, tl, add)
    eligible = hist[-1].status in REGISTERED_STATES
    if eligible and rng.random() < config.unregister_rate:
        add("unregistered", g.between(t, tl.start))
        eligible = False
    elif eligible and rng.random() < config.block_rate:
        add("blocked", g.between(t, tl.event_end))
        eligible = False
    if eligible and rng.random() < config.attend_rate:
        _attend(g, r, tl.sessions, tl.polls_by_entry, tl.doors, tl.start, tl.event_end, tl.post_end, tl.lag,
                tl.late_lag, engagement, answers, add)
    elif eligible and tl.post_end > tl.event_end and rng.random() < config.post_event_rate:
        _watch_recording(g, r, tl.sessions, tl.event_end, tl.post_end, tl.lag, engagement, add)


def _register(g: _Gen, r: Registrant, tl: _Timeline, add: _Add) -> datetime:
    """The registration phase (an invitation, a registration and its confirmation, or a block); returns the
    time it ended."""
    rng, start = g.rng, tl.start
    if r.reg_origin == "invite":
        t = add("invited", rng.choice(tl.invite_batches))
        if rng.random() < 0.35:
            t = add("invitedPendingRegistration", g.between(t, start - timedelta(hours=2)))
        registers = rng.random() < 0.75
    else:
        t = tl.origin
        if r.reg_origin in ("webhook", "admin") and rng.random() < 0.5:
            t = add("created", g.between(tl.origin, start - timedelta(hours=6)))
        registers = True
    if registers:
        t = g.between(t, start - timedelta(minutes=10))
        if r.reg_origin in ("sso", "webhook", "admin") or rng.random() < 0.3:
            t = add("autoConfirmed", t)
        else:
            t = add("registered", t)
            if rng.random() < 0.7:
                t = add("confirmed", g.between(t, min(t + timedelta(hours=2), start)))
    elif rng.random() < g.c.block_rate:
        add("blocked", g.between(t, start))
    return t


def _attend(
    g: _Gen, r: Registrant, sessions: list[Session], polls_by_entry: dict[str, list[Poll]],
    doors: datetime, start: datetime, event_end: datetime, post_end: datetime, lag: timedelta,
    late_lag: timedelta, engagement: list[EngagementFact], answers: list[PollAnswer], add: _Add,
) -> None:
    rng, c = g.rng, g.c
    watched = [s for s in sessions if rng.random() < c.session_watch_rate] or [rng.choice(sessions)]
    participant = rng.random() < c.participate_rate
    interactive = set()
    if participant:
        interactive = {s.entry_id for s in watched if rng.random() < 0.6} or {watched[0].entry_id}
    joins = {s.entry_id: g.between(s.start, s.start + (s.end - s.start) * 0.3) for s in watched}
    first_join = min(joins.values())
    if rng.random() < 0.15:
        add("attended", g.between(doors, start))
    else:
        add("attended", first_join)
    participated_at: datetime | None = None
    for s in watched:
        join = joins[s.entry_id]
        live = round(rng.uniform(1.0, max(1.0, (s.end - join).total_seconds() / 60)), 2)
        viewed_to = g.ms(join + timedelta(minutes=live))
        vod = round(rng.uniform(0.5, 10.0), 2) if rng.random() < 0.2 else 0.0
        available = s.end + (late_lag if rng.random() < c.late_row_rate else lag)
        inter = s.entry_id in interactive
        chosen: list[Poll] = []
        if inter:
            session_polls = polls_by_entry.get(s.entry_id, [])
            chosen = rng.sample(session_polls, rng.randint(0, len(session_polls))) if session_polls else []
            for p in sorted(chosen, key=lambda p: p.index):
                launched, answered_by = poll_window(s, p.index, len(session_polls))
                answers.append(PollAnswer(
                    entry_id=s.entry_id, poll_id=p.poll_id, poll_index=p.index, poll_type=p.poll_type,
                    question=p.question, user_id=r.user_id, email=r.email,
                    answer=g.long_answer(g.answer_for(p), p, r.user_id),
                    answered_at=g.between(launched, answered_by), available_at=available, defect=None,
                ))
            if participated_at is None:
                participated_at = g.between(join, viewed_to)
        engagement.append(_fact(g, r, s, join, viewed_to, live, vod, available, inter, len(chosen)))
    if participated_at is not None:
        add("participated", participated_at)
    if post_end > event_end and rng.random() < 0.05:
        add("participatedPostEvent", g.between(event_end, post_end))


def poll_window(s: Session, index: int, count: int) -> tuple[datetime, datetime]:
    """When poll `index` of `count` is launched in session `s` (evenly spread over the session, in index
    order) and by when it is answered (before the next one is launched): so each poll's earliest answer
    follows the polls' order, which is how kmsync derives a position (docs/reference/kaltura-api.md §11)."""
    step = (s.end - s.start) / max(count, 1)
    launched = s.start + step * (index - 1)
    return launched, launched + step * 0.9


def _watch_recording(
    g: _Gen, r: Registrant, sessions: list[Session], event_end: datetime, post_end: datetime,
    lag: timedelta, engagement: list[EngagementFact], add: _Add,
) -> None:
    rng = g.rng
    at = add("participatedPostEvent", g.between(event_end, post_end))
    for s in rng.sample(sessions, min(len(sessions), rng.randint(1, 2))):
        vod = round(rng.uniform(1.0, g.c.session_minutes), 2)
        viewed_to = g.ms(at + timedelta(minutes=vod))
        engagement.append(_fact(g, r, s, at, viewed_to, 0.0, vod, viewed_to + lag, False, 0))


def _fact(
    g: _Gen, r: Registrant, s: Session, viewed_from: datetime, viewed_to: datetime, live: float,
    vod: float, available: datetime, interactive: bool, answered: int,
) -> EngagementFact:
    rng = g.rng
    cuts = sorted(rng.random() for _ in range(4))
    parts = [round(b - a, 4) for a, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
    parts[-1] = round(1.0 - sum(parts[:-1]), 4)
    no, low, fair, good, high = parts if live > 0 else [0.0] * 5
    reactions = [rng.randint(0, 4) if interactive and rng.random() < 0.5 else 0 for _ in range(5)]
    raise_hand = rng.randint(1, 2) if interactive and rng.random() < 0.2 else 0
    messages = rng.randint(1, 6) if interactive and rng.random() < 0.5 else 0
    qna = rng.randint(1, 2) if interactive and rng.random() < 0.25 else 0
    mic = round(rng.uniform(0.5, live), 2) if interactive and live > 1 and rng.random() < 0.1 else 0.0
    cam = round(rng.uniform(0.5, live), 2) if interactive and live > 1 and rng.random() < 0.08 else 0.0
    if interactive and sum(reactions) + raise_hand + messages + qna + answered == 0 and not mic and not cam:
        messages = 1
    minutes = g.c.session_minutes
    return EngagementFact(
        entry_id=s.entry_id, entry_name=s.name, user_id=r.user_id, email=r.email, first_name=r.first_name,
        last_name=r.last_name, title=r.title, company=r.company, country=r.country, role=r.role,
        industry=r.industry, plays=rng.randint(1, 3), vod_minutes=vod, live_minutes=live,
        total_minutes=round(live + vod, 2), completion_rate=round(min(1.0, (live + vod) / minutes), 4),
        engaged_ratio=round(min(1.0, high + good + 0.5 * fair), 4) if live > 0 else 0.0,
        no_engagement_rate=no, low_engagement_rate=low, fair_engagement_rate=fair,
        good_engagement_rate=good, high_engagement_rate=high, clap=reactions[0], heart=reactions[1],
        think=reactions[2], wow=reactions[3], smile=reactions[4], total_reactions=sum(reactions),
        raise_hand=raise_hand, mic_on_minutes=mic, cam_on_minutes=cam,
        add_to_calendar=1 if rng.random() < 0.15 else 0, download_attachment=rng.choice((0, 0, 0, 1, 2)),
        answered_polls=answered, messages_sent_group=messages, qna_threads=qna, viewed_from=viewed_from,
        viewed_to=viewed_to, available_at=available, defect=None,
    )


def _soft_delete(g: _Gen, registrants: list[Registrant]) -> None:
    gone = [r for r in registrants if r.final_status == "unregistered"]
    for r in g.rng.sample(gone, min(len(gone), g.c.soft_deleted)):
        r.deleted_at = g.ms(r.transitions[-1].at + timedelta(minutes=1 + g.rng.random() * 59))


def _corrupt_emails(
    g: _Gen, registrants: list[Registrant], engagement: list[EngagementFact], answers: list[PollAnswer]
) -> None:
    """Give a few attendees unusable emails (and opaque user ids), everywhere they appear."""
    with_rows = sorted({e.user_id for e in engagement})
    victims = set(g.rng.sample(with_rows, min(len(with_rows), g.c.malformed_users)))
    renamed: dict[str, tuple[str, str | None, str]] = {}
    for n, r in enumerate(r for r in registrants if r.user_id in victims):
        template = _BAD_EMAILS[n % len(_BAD_EMAILS)]
        domain = (r.email or "x@example.com").split("@", 1)[1]
        bad = None if template is None else template.format(
            first=r.first_name.lower(), last=r.last_name.lower(), domain=domain)
        defect = "missing_email" if bad is None else "bad_email"
        new_id = "u_" + g.hexid(12)
        renamed[r.user_id] = (new_id, bad, defect)
        r.user_id, r.email, r.email_defect = new_id, bad, defect
    for i, e in enumerate(engagement):
        if e.user_id in renamed:
            new_id, bad, defect = renamed[e.user_id]
            engagement[i] = _replace(e, user_id=new_id, email=bad, defect=defect)
    for i, a in enumerate(answers):
        if a.user_id in renamed:
            new_id, bad, defect = renamed[a.user_id]
            answers[i] = _replace(a, user_id=new_id, email=bad, defect=defect)


def _damage_engagement(g: _Gen, engagement: list[EngagementFact]) -> list[EngagementFact]:
    clean = [i for i, e in enumerate(engagement) if e.defect is None]
    kinds = ("missing_fields", "non_numeric", "missing_email")
    for n, i in enumerate(sorted(g.rng.sample(clean, min(len(clean), g.c.malformed_engagement_rows)))):
        kind = kinds[n % len(kinds)]
        e = engagement[i]
        engagement[i] = _replace(e, defect=kind, email=None if kind == "missing_email" else e.email)
    return engagement


def _damage_answers(g: _Gen, answers: list[PollAnswer]) -> list[PollAnswer]:
    clean = [i for i, a in enumerate(answers) if a.defect is None]
    for i in g.rng.sample(clean, min(len(clean), g.c.malformed_poll_rows)):
        answers[i] = _replace(answers[i], defect="missing_fields")
    return answers


def _replace(obj: _T, **changes: Any) -> _T:
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
