"""The seed's granular statuses as kmsync writes them to Marketo (docs/design/granular-statuses.md §1).

The label lives on the person's program membership, in a program member custom field written with
Sync Program Member Data (docs/reference/marketo-api.md §13.1, §13.4). The field's API name is per
Marketo instance (tenants file); these are the defaults `kmsync marketo check --apply` creates.

Labels have their own forward-only order, finer than the channel's: the rank of a label is
(step of the channel status it comes with, sub-rank), so "During-event visit" follows
"Pre-event visit" while both are Attended (step 50).
"""

from __future__ import annotations

from typing import Final

from kmsync_contracts.seed import GRANULAR_STATUS_LABELS

#: Default API name of the program member custom field (docs/reference/marketo-api.md §13.2).
GRANULAR_STATUS_FIELD: Final = "kalturaGranularStatus"
GRANULAR_STATUS_DISPLAY_NAME: Final = "Kaltura Granular Status"
GRANULAR_STATUS_DESCRIPTION: Final = "Kaltura's most granular registration/attendance status (kmsync)"
#: The longest label ("Registered no confirmation required"): the field must hold it uncut.
GRANULAR_STATUS_MIN_LENGTH: Final = max(len(label) for label in GRANULAR_STATUS_LABELS)
assert GRANULAR_STATUS_MIN_LENGTH == 35
#: The program member's standard status reason, an optional mirror (docs/reference/marketo-api.md §13.5).
STATUS_REASON_FIELD: Final = "statusReason"

#: Labels that rank above others of the same channel step; every other label has sub-rank 0.
LABEL_SUBRANK: Final[dict[str, int]] = {"During-event visit": 1}
assert set(LABEL_SUBRANK) <= set(GRANULAR_STATUS_LABELS)

#: (channel step, sub-rank): a label moves forward when its rank is not lower than the member's.
LabelRank = tuple[int, int]


def label_rank(step: int, label: str) -> LabelRank:
    """The label's place in the forward-only order, given the step of its channel status."""
    return step, LABEL_SUBRANK.get(label, 0)
