"""What the app's lifespan builds and the routes use, as one object on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ...auth import KeyRing
from ...configstore import ConfigStore
from ...manager import BotManager
from ...routing import RolloutCounters, RolloutTable
from ...sync import StoreSync
from .failed_auth import FailedAuthentications
from .metrics import Metrics
from .quota import Quota
from .rollout_shadow import ShadowMirrors
from .settings import RuntimeSettings


@dataclass
class RuntimeState:
    settings: RuntimeSettings
    store: ConfigStore
    manager: BotManager
    sync: StoreSync
    quota: Quota
    keyring: KeyRing | None  # None: authentication is off
    metrics: Metrics
    failed_auth: FailedAuthentications
    #: the rollouts of this replica's Bots (fed by the sync) and what their turns measured
    rollouts: RolloutTable
    rollout_counters: RolloutCounters
    shadows: ShadowMirrors  # the candidates' shadow turns in flight


async def get_state(request: Request) -> RuntimeState:
    """(async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread.)"""
    state: RuntimeState = request.app.state.runtime
    return state


StateDep = Annotated[RuntimeState, Depends(get_state)]
