"""The aiohttp application: api_v3, the User Profile service and the admin API on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from kaltura_sandbox import http_admin, http_api_v3, http_events, http_reports, http_user_profile
from kaltura_sandbox.http_common import SANDBOX_KEY
from kaltura_sandbox.sandbox import Sandbox


def build_app(sandbox: Sandbox) -> web.Application:
    app = web.Application()
    app[SANDBOX_KEY] = sandbox
    http_api_v3.add_routes(app)
    http_user_profile.add_routes(app)
    http_reports.add_routes(app)
    http_events.add_routes(app)
    http_admin.add_routes(app)

    async def notifications(app: web.Application) -> AsyncIterator[None]:
        sandbox.dispatcher.start()
        yield
        await sandbox.dispatcher.stop()

    app.cleanup_ctx.append(notifications)
    return app
