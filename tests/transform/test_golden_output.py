"""Transform's output is pinned byte for byte: op ids (content fingerprints), encoded operations, dead
letters, state records and metric counts of a fixed, varied input set (golden_inputs.py) must equal
golden_pure_path.txt. Any optimisation of the pure path has to keep this passing unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .golden_inputs import app_lines, consumer_records, golden_lines, inputs, worker

GOLDEN = Path(__file__).with_name("golden_pure_path.txt")
#: The golden file itself is pinned too, so regenerating it is a deliberate, visible change. Last
#: regenerated for pydantic 2.13 (quixstreams 3.28 needs <2.14): one dead letter's reason lists
#: pydantic's validation errors in another order; every operation's bytes stayed the same. Then for
#: issue #21's one reason-code vocabulary: dead letters' reason_code and the dead-letter metric's
#: reason label became kmsync.* (ReasonCode); every operation's bytes stayed the same. Then for
#: issue #16's granular labels: program_member_data operations, their label state records and
#: counters were added, and dead letters' attendee payloads carry the new schedule fields (null);
#: every earlier operation's bytes stayed the same. Then for transform.decisions.v1 (issue #16 §4): the
#: kmsync_transform_decisions_total counters were added (the decisions themselves carry a keyed email
#: hash and are pinned by test_decisions.py); every operation's bytes stayed the same. Then for poll
#: positions (issue #16 §5) and registration data (§3): dead letters' poll payloads carry
#: poll_position (null), attendee payloads title, company, country and registration; every operation's
#: bytes stayed the same.
#: Then issue #16's label decisions: one label_undecided (an attended status without a schedule) counted;
#: dead letters' payloads carry lane (issue #18); every operation's bytes stayed the same.
#: Then issue #16's lead updates on a profile edit: each member's lead fingerprint state record
#: (statuses:lead|<member>) was added, 7 lines; every operation's bytes stayed the same.
#: Then the activity_once decision (a later final snapshot of a session whose activity was emitted): its
#: counter, 1 line; every operation's bytes stayed the same.
GOLDEN_SHA256 = "d13ad2644368bd3bc842c00c657ad37b76ea69f514c091b44ff7c916fc6a7fff"


def test_golden_file_is_the_pinned_one() -> None:
    assert hashlib.sha256(GOLDEN.read_bytes()).hexdigest() == GOLDEN_SHA256


def assert_same_lines(got: list[str], want: list[str]) -> None:
    for n, (g, w) in enumerate(zip(got, want, strict=False), start=1):
        assert g == w, f"line {n} of {GOLDEN.name} differs"
    assert len(got) == len(want)


def test_pure_path_output_is_byte_identical_to_the_golden_file() -> None:
    want = GOLDEN.read_text().splitlines()
    assert_same_lines(golden_lines(), want)
    kinds = {line.split("\t", 1)[0] for line in want}
    assert kinds == {"ops", "dlq", "state", "metric", "ops-fraction", "ops-percent"}, "the set covers every output"


def test_the_workers_batch_path_gives_the_same_bytes_and_metrics() -> None:
    """The app's own path (transform_batch over consumer records, metrics included) matches too."""
    want = [line for line in GOLDEN.read_text().splitlines() if not line.startswith(("ops-", "metric"))]
    want += [line for line in GOLDEN.read_text().splitlines() if line.startswith("metric")]
    assert_same_lines(app_lines(worker(), consumer_records(inputs())), want)
