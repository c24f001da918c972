"""Token refresh logic on virtual time: shared, single-flight, early refresh, expires_in 0, no leaks."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from kmsync_common.clock import FakeClock
from kmsync_marketo.auth import TokenManager, TokenRegistry, TokenResponse
from kmsync_marketo.settings import MarketoSettings


class FakeIdentity:
    """Answers like Identity: the same token while it lives, with its remaining lifetime."""

    def __init__(self, clock: FakeClock, lifetimes: list[int] | None = None) -> None:
        self.clock = clock
        self.calls = 0
        self.lifetimes = lifetimes

    async def __call__(self) -> TokenResponse:
        self.calls += 1
        await asyncio.sleep(0)  # let other callers pile up
        expires = self.lifetimes.pop(0) if self.lifetimes else 3600
        return TokenResponse(access_token=SecretStr(f"tok-{self.calls}:int"), expires_in=expires)


async def test_concurrent_callers_share_one_identity_call() -> None:
    clock = FakeClock()
    identity = FakeIdentity(clock)
    manager = TokenManager(identity, clock=clock)
    tokens = await asyncio.gather(*(manager.bearer() for _ in range(20)))
    assert identity.calls == 1
    assert {t.get_secret_value() for t in tokens} == {"tok-1:int"}


async def test_refreshes_before_expiry_not_after() -> None:
    clock = FakeClock()
    identity = FakeIdentity(clock)
    manager = TokenManager(identity, clock=clock, refresh_margin_seconds=60)
    await manager.bearer()
    clock.advance(3539)
    assert (await manager.bearer()).get_secret_value() == "tok-1:int"
    clock.advance(2)  # 3541 s: inside the 60 s margin
    assert (await manager.bearer()).get_secret_value() == "tok-2:int"
    assert identity.calls == 2


async def test_expires_in_zero_waits_for_a_fresh_token() -> None:
    clock = FakeClock()
    identity = FakeIdentity(clock, lifetimes=[0, 3600])
    manager = TokenManager(identity, clock=clock, zero_lifetime_retry_seconds=1.0)
    token = await manager.bearer()
    assert token.get_secret_value() == "tok-2:int"
    assert identity.calls == 2 and clock.monotonic() >= 1.0


async def test_invalidate_drops_only_the_rejected_token() -> None:
    clock = FakeClock()
    identity = FakeIdentity(clock)
    manager = TokenManager(identity, clock=clock)
    first = await manager.bearer()
    manager.invalidate(SecretStr("some-other-token"))
    assert (await manager.bearer()).get_secret_value() == first.get_secret_value()
    manager.invalidate(first)
    assert (await manager.bearer()).get_secret_value() == "tok-2:int"


def test_registry_shares_one_manager_per_endpoint_and_client_id() -> None:
    registry = TokenRegistry()
    made: list[TokenManager] = []

    def factory() -> TokenManager:
        made.append(TokenManager(FakeIdentity(FakeClock())))
        return made[-1]

    a = registry.get("https://123-abc-456.mktorest.com", "cid", factory)
    b = registry.get("https://123-abc-456.mktorest.com", "cid", factory)
    c = registry.get("https://123-abc-456.mktorest.com", "other", factory)
    assert a is b and a is not c and len(made) == 2


def test_secret_never_appears_in_repr_or_dump() -> None:
    settings = MarketoSettings(endpoint="https://123-ABC-456.mktorest.com/rest", client_id="cid",
                               client_secret=SecretStr("s3cr3t-value"))
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in settings.model_dump_json()
    assert settings.endpoint == "https://123-ABC-456.mktorest.com"  # /rest removed (seed, §1.1)
    token = TokenResponse(access_token=SecretStr("tok-secret"), expires_in=10)
    assert "tok-secret" not in repr(token)


def test_plain_http_endpoint_is_refused_outside_tests() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="https://"):
        MarketoSettings(endpoint="http://example.mktorest.com", client_id="c", client_secret=SecretStr("s"))


async def test_a_token_shorter_than_the_margin_is_used_for_half_its_life_without_a_stall() -> None:
    # Tokens that live a minute (the chaos run's fault plan) used to be waited out for up to the
    # 60 s margin on every refresh, stalling every call of the instance.
    clock = FakeClock()
    identity = FakeIdentity(clock, lifetimes=[60, 40])
    manager = TokenManager(identity, clock=clock, refresh_margin_seconds=60)
    assert (await manager.bearer()).get_secret_value() == "tok-1:int"
    assert clock.monotonic() == 0.0 and identity.calls == 1
    clock.advance(29)
    assert (await manager.bearer()).get_secret_value() == "tok-1:int"
    clock.advance(2)  # 31 s: past half of 60 s
    assert (await manager.bearer()).get_secret_value() == "tok-2:int"
    assert clock.monotonic() == 31.0


async def test_a_token_with_seconds_left_is_waited_out_then_a_fresh_short_one_is_used() -> None:
    clock = FakeClock()
    identity = FakeIdentity(clock, lifetimes=[4, 40])
    manager = TokenManager(identity, clock=clock, refresh_margin_seconds=60)
    token = await manager.bearer()
    # 4 s left on the first answer: too little to work with, so it waited 4 s and asked again.
    assert token.get_secret_value() == "tok-2:int" and clock.monotonic() == 4.0
    assert identity.calls == 2
    clock.advance(19)
    assert (await manager.bearer()).get_secret_value() == "tok-2:int"  # half of 40 s
    clock.advance(2)
    assert (await manager.bearer()).get_secret_value() == "tok-3:int"
