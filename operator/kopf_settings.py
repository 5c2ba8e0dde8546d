"""kopf's own settings for this operator: no diff-base, a finalizer name of its own, timeouts.

kopf's change handlers are not used (:mod:`.handlers`), so nothing kopf persists on the objects
is needed: its diff-base would copy every Bot's spec into an annotation on each event, and its
finalizer logic would remove a finalizer no handler of its asked for.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from .settings import OperatorSettings

#: kopf's finalizer: a name no object carries (ours, :data:`.kube.FINALIZER`, is handled by
#: the Bot event handler).
KOPF_FINALIZER = "kopf.kubebots.io/unused"


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: with no change handlers kopf needs none, and its default builds one (a deep
    copy of the object) on every event only to compare it with nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def tune(settings: kopf.OperatorSettings, cfg: OperatorSettings) -> None:
    """kopf settings: no diff-base, our annotation prefix, sane timeouts, our events only."""
    # kopf removes *its* finalizer from any object no handler of its needs one for: ours is
    # handled by bot_event, so kopf's is given a name of its own (never set on any object).
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=cfg.annotation_prefix
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    # Only our explicit events, one per transition (:mod:`.events`): log lines are not posted,
    # and a burst (10,000 Bots created) posts on a few connections of the bounded pool, leaving
    # the others to the status patches.
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    settings.posting.worker_limit = max(1, cfg.api_connections // 2)
    settings.posting.idle_timeout = 0.05  # a Bot's worker keeps its slot this long after posting
    settings.posting.reporting_component = "kubebots-operator"
    settings.posting.event_name_prefix = "kubebots-"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8
