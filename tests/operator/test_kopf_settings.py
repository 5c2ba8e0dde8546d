"""kopf's settings for this operator: it keeps nothing on the Bots and leaves our finalizer."""

from __future__ import annotations

import kopf

from kubebots.operator.kopf_settings import tune
from kubebots.operator.kube import FINALIZER
from kubebots.operator.settings import OperatorSettings


def test_kopf_leaves_our_finalizer_and_builds_no_diff_base() -> None:
    settings = kopf.OperatorSettings()
    tune(settings, OperatorSettings())
    # kopf removes its own finalizer from objects none of its handlers needs it for
    assert settings.persistence.finalizer != FINALIZER
    body = kopf.Body({"metadata": {"name": "b"}, "spec": {"big": "x" * 1000}})
    diffbase = settings.persistence.diffbase_storage
    assert diffbase.build(body=body) == {}
    assert diffbase.fetch(body=body) is None
    patch = kopf.Patch()
    diffbase.store(body=body, patch=patch, essence=diffbase.build(body=body))
    assert not patch  # nothing written to the object


def test_kopf_posts_our_events_only_and_uses_our_annotation_prefix() -> None:
    settings = kopf.OperatorSettings()
    tune(settings, OperatorSettings(annotation_prefix="bots.example.com", api_connections=8))
    # kopf.info posts (Normal events: Synced, Ready, Deleted); log lines are never posted
    assert settings.posting.enabled and settings.posting.level <= 20  # INFO
    assert settings.posting.loggers is False
    # a burst posts on half the connections at most, the others left to the status patches
    assert settings.posting.worker_limit == 4
    assert settings.posting.reporting_component == "kubebots-operator"
    assert settings.persistence.progress_storage.prefix == "bots.example.com"
    assert settings.watching.client_timeout > settings.watching.server_timeout
