"""The runtime service's settings (pydantic-settings, env prefix ``KUBEBOTS_``).

Read once at the process edge (``kubebots serve``) and passed to :func:`create_app`.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ...configstore import (
    DEFAULT_DATA_DIR,
    DEFAULT_TABLE_PREFIX,
    TABLE_PREFIX_PATTERN,
    embedded_store_url,
)
from ...kube_config import SERVICE_ACCOUNT_DIR
from ...tools.egress import EgressPolicy

#: The limiter's Redis when ``rate_limit_backend=redis`` names none.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RuntimeSettings(BaseSettings):
    """Everything ``kubebots serve`` can be told, as flags or ``KUBEBOTS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="KUBEBOTS_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = DEFAULT_DATA_DIR
    store: str | None = Field(
        default=None,
        description="Config store URL (default: sqlite:<data_dir>/store.db). May hold a password.",
    )
    table_prefix: str = Field(
        default=DEFAULT_TABLE_PREFIX,
        pattern=TABLE_PREFIX_PATTERN,
        description="Prefix of every table kubebots creates (several installations, one DB).",
    )
    replica_id: str | None = Field(default=None, description="Default: <hostname>-<pid>.")
    preload: bool = False
    max_bots: int | None = Field(default=None, ge=1)
    idle_ttl: float | None = Field(default=None, gt=0)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    secrets: Literal["none", "directory", "kubernetes"] = Field(
        default="none",
        description="Where apiKeySecretRef keys come from: a directory of mounted Secrets "
        "(<secrets_dir>/<name>/<key>) or the Kubernetes API (the Bot's namespace).",
    )
    secrets_dir: Path | None = Field(
        default=None, description="Mounted Secrets, as <dir>/<secret name>/<key>."
    )
    service_account_dir: Path = Field(
        default=SERVICE_ACCOUNT_DIR,
        description="A pod's service account (token, ca.crt) for KUBEBOTS_SECRETS=kubernetes; "
        "used with KUBERNETES_SERVICE_HOST/PORT, else the kubeconfig is.",
    )

    auth: bool = Field(default=True, description="Require API keys (turn off only explicitly).")
    api_keys_file: Path | None = None
    api_keys: SecretStr | None = Field(default=None, description="The key file's content (JSON).")
    admin_key: SecretStr | None = None

    rate_limit_backend: Literal["auto", "memory", "postgres", "redis"] = Field(
        default="auto",
        description="Where per-client limits are counted, shared by the replicas (memory: this "
        "replica only). auto: redis when redis_url is set, else postgres when the store is "
        "postgres, else memory.",
    )
    redis_url: str | None = Field(
        default=None,
        description="The limiter's Redis (redis://[:password@]host:port/db or rediss://). "
        "May hold a password.",
    )
    rate_limit_on_outage: Literal["local", "open", "closed"] = Field(
        default="local",
        description="While the limiter's storage is unavailable: local (each replica enforces "
        "the limits in memory), open (no limits) or closed (503).",
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Default per-client limit for clients without their own."
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=1,
        description="Failed authentications a source address may make per minute (per replica) "
        "before it gets 429 until the minute frees up.",
    )
    tool_egress: str | None = Field(
        default=None,
        description="Hosts and networks Bot tools (MCP servers, HTTP tools) may reach, "
        "comma-separated: names, *.domain patterns, IPs, CIDRs, or * for any. Always allowed: "
        "the cluster's own service names (*.svc, *.cluster.local, single-label names).",
    )
    tool_retry_interval: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between attempts to build a Bot whose MCP server could not be "
        "listed (the last good version serves meanwhile).",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    shadow_max_in_flight: int = Field(
        default=16,
        ge=0,
        description="Shadow turns (a Bot's rollout in shadow mode mirrors turns to its "
        "candidate) this replica runs at once; a mirror beyond that is dropped and counted "
        "(kubebots_rollout_mirrors_dropped_total). 0: no mirrors.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), e.g. "
        "https://app.example.com; comma-separated or a JSON list; '*' for any. Empty (the "
        "default): CORS is off.",
    )
    ui: bool = Field(
        default=False,
        description="Serve the web console at /ui (the embedded default turns it on).",
    )
    log_level: str = "INFO"
    freeze_gc: bool = Field(
        default=True, description="gc.freeze() after start-up and rarer young collections."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """``a,b`` or ``["a", "b"]`` (the variable's text), or a list (the constructor's)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("tool_egress")
    @classmethod
    def _egress(cls, value: str | None) -> str | None:
        EgressPolicy.parse(value)  # a bad entry is a settings error at start-up, by name
        return value

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.tool_egress)

    def store_url(self) -> str:
        return self.store or embedded_store_url(self.data_dir)

    def effective_replica_id(self) -> str:
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"

    def effective_rate_limit_backend(self) -> Literal["memory", "postgres", "redis"]:
        if self.rate_limit_backend != "auto":
            return self.rate_limit_backend
        if self.redis_url:
            return "redis"
        return "postgres" if self.store_url().startswith(("postgresql:", "postgres:")) else "memory"

    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL
