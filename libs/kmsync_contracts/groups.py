"""Consumer group ids one service reads about another's (before the deployment's topic prefix).

ingest's backfill paces itself on transform's backlog (services/kmsync_ingest/backfill_pace.py), so it
must name transform's consumer group; both take the default from here.
"""

from __future__ import annotations

#: transform's consumer group and quixstreams application id (KMSYNC_TRANSFORM_APP_ID's default).
TRANSFORM_APP_ID = "kmsync-transform"
