"""The operator's settings (pydantic-settings, env prefix ``KUBEBOTS_``), read at the edge."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubebots.runtime.configstore import (
    DEFAULT_STORE_URL,
    DEFAULT_TABLE_PREFIX,
    TABLE_PREFIX_PATTERN,
)
from kubebots.runtime.kube_config import SERVICE_ACCOUNT_DIR


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBEBOTS_", extra="ignore")

    store: str = Field(
        default=DEFAULT_STORE_URL,
        description="Config store URL (postgresql://... in a cluster; from a Secret).",
    )
    table_prefix: str = Field(default=DEFAULT_TABLE_PREFIX, pattern=TABLE_PREFIX_PATTERN)
    replica_max_age: float = Field(
        default=15.0, gt=0, description="A runtime replica is live while its heartbeat is younger."
    )
    ready_wait: float = Field(
        default=2.0, ge=0, description="How long a handler waits for replicas before returning."
    )
    status_interval: float = Field(
        default=0.25,
        gt=0,
        description="The status controller's tick while a Bot rolls out or replicas move: "
        "one read of the replica reports for every Bot (seconds).",
    )
    status_idle_interval: float = Field(
        default=2.0,
        gt=0,
        description="Its tick while nothing is pending: how soon replicas appearing, leaving "
        "or expiring show in the statuses (seconds).",
    )
    rollout_tick: float = Field(
        default=0.5,
        gt=0,
        description="The rollout controller's tick: while a Bot's canary progresses, the "
        "replica reports are read this often and its step judged when due (seconds).",
    )
    status_patch_concurrency: int = Field(
        default=8, ge=1, description="Status patches the controller sends at once."
    )
    drift_interval: float = Field(
        default=60.0,
        gt=0,
        description="Drift repair (one store listing against every Bot; a missing or stale "
        "entry is rewritten) runs this often, jittered by +-20% (seconds).",
    )
    retry_interval: float = Field(
        default=2.0,
        gt=0,
        description="A write the config store refused (down) is retried this often, and so "
        "are tombstones; finalizers wait for theirs (seconds).",
    )
    api_connections: int = Field(
        default=8,
        ge=1,
        description="Keep-alive connections kopf sends its requests (patches) on, beside its "
        "watch streams; requests beyond wait for one (a burst then costs no TLS handshakes).",
    )
    api_threads: int = Field(
        default=8,
        ge=1,
        description="Threads (and kept-alive connections) for the operator's own API calls: "
        "finalizers, status patches, Secret reads; as many as status_patch_concurrency, or the "
        "status controller waits for threads. More did not speed a namespace delete (the "
        "apiserver sets the deletion timestamps at its own pace) and each thread costs memory.",
    )
    reports_ttl: float = Field(
        default=0.1,
        ge=0,
        description="Handlers waiting for their writes read the replica reports at most "
        "this often (seconds).",
    )
    compact_interval: float = Field(
        default=600.0,
        gt=0,
        description="Config store housekeeping (compaction, then replica expiry) runs this "
        "often, jittered by +-20%; a store that refuses is tried again the next time (seconds).",
    )
    history_retention: float = Field(
        default=3600.0,
        gt=0,
        description="Compaction forgets the store's history (events, tombstones) older than "
        "this; a runtime watching from before it lists again (seconds).",
    )
    replica_expiry: float = Field(
        default=3600.0,
        gt=0,
        description="Replica expiry deletes the reports of runtime replicas silent for longer "
        "than this (seconds); they stop counting after replica_max_age already.",
    )
    annotation_prefix: str = "kubebots.io"
    api_liveness_timeout: float = Field(
        default=60.0,
        gt=0,
        description="/healthz (--liveness) fails once the Kubernetes API has not answered the "
        "operator for longer than this (seconds), so the kubelet restarts a stuck operator.",
    )
    stall_timeout: float = Field(
        default=180.0,
        gt=0,
        description="/healthz fails once the status controller has made no progress (a step, "
        "a patch), a Bot handler has run, or waiting tombstones have had no write attempt for "
        "longer than this (seconds); a config store that is down does not count.",
    )
    api_probe_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Timeout of the API call each /healthz makes (below the probe's own timeout).",
    )
    service_account_dir: Path = Field(
        default=SERVICE_ACCOUNT_DIR,
        description="A pod's service account (token, ca.crt): used with KUBERNETES_SERVICE_HOST"
        "/PORT, else the kubeconfig is.",
    )
