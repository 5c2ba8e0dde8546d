"""The ``rollout`` section: how a changed spec reaches the Bot's traffic.

Without it a new generation replaces the old one at once. With ``strategy: canary`` the new
generation (the candidate) first gets ``steps[0].weight`` percent of new conversations for
``steps[0].durationSeconds``, then the next step's weight, and so on; after the last step it is
promoted (all traffic). ``analysis`` compares the candidate with the stable generation every
``intervalSeconds`` of a step and rolls the candidate back when a threshold is crossed. With
``shadow: true`` clients always get the stable generation's replies and each step's weight is
the share of turns mirrored to the candidate (its replies are measured, never returned).
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from ._base import SchemaModel

MAX_STEPS = 20


class RolloutStep(SchemaModel):
    """One step of a canary: a share of new conversations for a while."""

    weight: int = Field(
        ge=1,
        le=100,
        description="Percent of new conversations (or mirrored turns) sent to the candidate.",
    )
    duration_seconds: float = Field(
        default=600.0,
        ge=0.0,
        le=7 * 24 * 3600.0,
        description="How long the step lasts before the next one (if its analysis passes).",
    )


class RolloutAnalysis(SchemaModel):
    """Thresholds the candidate must hold, measured over each step against the stable
    generation. A threshold left out is not checked."""

    interval_seconds: float = Field(
        default=60.0, ge=0.5, le=3600.0, description="How often a step's figures are compared."
    )
    min_turns: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Candidate turns a step needs before it is judged (and before it may end).",
    )
    max_error_rate_percent: float | None = Field(
        default=5.0,
        ge=0.0,
        le=100.0,
        description="Highest share of the candidate's turns that may fail, in percent.",
    )
    max_p95_latency_ratio: float | None = Field(
        default=None,
        gt=0.0,
        le=1000.0,
        description="Highest candidate p95 turn latency, as a multiple of the stable one's.",
    )
    max_tokens_per_turn_ratio: float | None = Field(
        default=None,
        gt=0.0,
        le=1000.0,
        description="Highest candidate tokens per turn, as a multiple of the stable one's.",
    )
    flag_reply_pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="A regular expression (Python syntax); a reply it matches is flagged.",
    )
    max_flagged_percent: float | None = Field(
        default=None,
        ge=0.0,
        le=100.0,
        description="Highest share of candidate replies flagReplyPattern matches, in percent.",
    )

    @field_validator("flag_reply_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _flag_pair(self) -> Self:
        if (self.flag_reply_pattern is None) != (self.max_flagged_percent is None):
            raise ValueError("set flagReplyPattern and maxFlaggedPercent together")
        return self


class RolloutConfig(SchemaModel):
    """Progressive delivery of spec changes: a canary by share of conversations, optionally
    in shadow, with automatic rollback."""

    strategy: Literal["canary"] = Field(
        default="canary", description="canary: the candidate gets the steps' shares in turn."
    )
    steps: tuple[RolloutStep, ...] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The canary's steps, in order, weights not decreasing; then promotion.",
    )
    analysis: RolloutAnalysis = Field(
        default_factory=RolloutAnalysis,
        description="What the candidate is compared on, and how often.",
    )
    shadow: bool = Field(
        default=False,
        description="Mirror the steps' share to the candidate; its replies are never returned.",
    )

    @model_validator(mode="after")
    def _weights_grow(self) -> Self:
        weights = [step.weight for step in self.steps]
        if weights != sorted(weights):
            # a smaller weight would move conversations back: they keep their generation
            raise ValueError("steps' weights must not decrease")
        return self
