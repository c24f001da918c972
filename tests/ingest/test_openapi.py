"""GET /openapi.json serves ingest's OpenAPI document, and the document describes exactly the routes
the app registers (a route added without documenting it, or documented and gone, fails here)."""

from __future__ import annotations

from pathlib import Path

import httpx

from kaltura_sandbox.testing import running_sandbox
from kmsync_ingest.http_app import build_app, serve
from kmsync_ingest.service import IngestService
from kmsync_testing.ingest import settings_for, tenants_for

#: aiohttp adds HEAD to every GET route by itself; the document leaves it implicit.
IMPLICIT = {"HEAD"}


async def test_the_served_document_lists_every_route_the_app_registers(tmp_path: Path) -> None:
    async with running_sandbox({"registrants": 1, "sessions": 1}, seed=1) as sb:
        tenants = tenants_for(sb, tmp_path)
    # Not started: serving the document needs no Kafka (nothing is listening at this bootstrap).
    service = IngestService(settings_for("127.0.0.1:9", "openapi.", None), tenants, lambda event: None)  # type: ignore[arg-type,return-value]
    registered = {(route.resource.canonical, route.method.lower())
                  for route in build_app(service).router.routes()
                  if route.resource is not None and route.method not in IMPLICIT}
    runner, port = await serve(service, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        await runner.cleanup()
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in {"get", "put", "post", "delete", "patch", "head", "options"}}
    assert documented == registered
    assert ("/openapi.json", "get") in registered
    # Anchors are resolved: every documented operation says what it answers.
    assert all(document["paths"][path][method].get("responses") for path, method in documented)
