"""The running sandbox's state: scenario, clock, KS authority and notification dispatcher."""

from __future__ import annotations

from datetime import datetime

from kaltura_sandbox.clock import ScenarioClock
from kaltura_sandbox.config import ScenarioConfig
from kaltura_sandbox.ks import KsAuthority
from kaltura_sandbox.notifications import Dispatcher
from kaltura_sandbox.scenario import Scenario, generate
from kaltura_sandbox.state import ScenarioView


class Sandbox:
    def __init__(
        self, config: ScenarioConfig, *, seed: int = 0, speed: float = 0.0,
        notify_url: str | None = None, notify_secret: str | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.scenario: Scenario = generate(config, seed)
        self.view = ScenarioView(self.scenario)
        self.clock = ScenarioClock(self.scenario.origin, speed=speed)
        self.ks = KsAuthority(config.partner_id, self.scenario.admin_secret)
        self.dispatcher = Dispatcher(
            self.scenario, self.view, self.clock, config.notifications,
            secret=notify_secret or self.scenario.admin_secret, url=notify_url,
        )

    @property
    def partner_id(self) -> int:
        return self.config.partner_id

    @property
    def admin_secret(self) -> str:
        return self.scenario.admin_secret

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, seconds: float) -> datetime:
        when = self.clock.advance(seconds)
        self.dispatcher.wake()
        return when

    def advance_to(self, when: datetime) -> datetime:
        result = self.clock.advance_to(when)
        self.dispatcher.wake()
        return result

    def reset(self) -> None:
        """Back to scenario time zero; notifications rescheduled, delivery log cleared."""
        self.clock.reset()
        self.dispatcher.reset()
