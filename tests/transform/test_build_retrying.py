"""Transform builds its quixstreams application again while a topic it declares is not visible yet
(the broker's metadata lags behind a creation or a restart), and gives up with the error after the
last attempt instead of waiting forever."""

from __future__ import annotations

from typing import Any, cast

import pytest
from quixstreams import Application
from quixstreams.models.topics.exceptions import TopicNotFoundError

from kmsync_transform.engine_quix import build_retrying

APP = cast(Application, object())


def flaky(failures: int) -> tuple[list[int], Any]:
    calls: list[int] = []

    def build() -> Application:
        calls.append(1)
        if len(calls) <= failures:
            raise TopicNotFoundError('Topic "repartition__kmsync-transform--x--session" not found on the broker')
        return APP

    return calls, build


def test_a_topic_not_visible_yet_is_waited_for() -> None:
    pauses: list[float] = []
    calls, build = flaky(2)
    assert build_retrying(build, attempts=5, sleep=pauses.append) is APP
    assert len(calls) == 3 and pauses == [1, 2]


def test_after_the_last_attempt_the_error_stands() -> None:
    pauses: list[float] = []
    calls, build = flaky(10)
    with pytest.raises(TopicNotFoundError, match="repartition__"):
        build_retrying(build, attempts=3, sleep=pauses.append)
    assert len(calls) == 3 and pauses == [1, 2]
