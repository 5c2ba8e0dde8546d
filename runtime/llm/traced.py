"""A span per LLM call: :class:`TracedProvider` wraps a bot's provider for its tool loop.

Each call (a whole reply, or a stream until its last delta) is one client span named
``chat <model>``, with OpenTelemetry's ``gen_ai`` attributes: ``gen_ai.operation.name``,
``gen_ai.system`` (the Bot's provider), ``gen_ai.request.model``, the token usage
(``gen_ai.usage.input_tokens`` / ``output_tokens``, when the provider reports it) and
``gen_ai.response.finish_reasons``; a fallback endpoint that answered is named
(``kubebots.llm.endpoint``, its ``model@host``). Never the prompt or the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from opentelemetry.trace import Span

from .. import tracing
from .base import ChatMessage, Completion, Delta, LLMProvider, Settings, Usage, UsageSink


class TracedProvider:
    """``inner`` (which its owner closes), each call in a span (see the module's docs)."""

    def __init__(self, inner: LLMProvider, *, system: str, model: str, bot_id: str) -> None:
        self._inner = inner
        self._name = f"chat {model}"
        self._attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.request.model": model,
            "kubebots.bot.id": bot_id,
        }

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        span = tracing.start_span(self._name, self._attributes, kind="client")
        try:
            completion = await self._inner.complete(messages, settings=settings)
            self._answered(span, completion.usage, completion.finish_reason)
            return completion
        except Exception as exc:
            tracing.failed(span, exc)
            raise
        finally:
            span.end()

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        span = tracing.start_span(self._name, self._attributes, kind="client")
        reported: list[Usage] = []

        def told(usage: Usage) -> None:
            reported.append(usage)
            if on_usage is not None:
                on_usage(usage)

        deltas = self._inner.stream(messages, settings=settings, on_usage=told)
        finish: str | None = None
        try:
            async for delta in deltas:
                finish = delta.finish_reason or finish
                yield delta
            self._answered(span, reported[-1] if reported else None, finish)
        except Exception as exc:
            tracing.failed(span, exc)
            raise
        finally:
            span.end()
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()  # released now, even when the consumer stops early

    async def close(self) -> None:
        await self._inner.close()

    def _answered(self, span: Span, usage: Usage | None, finish: str | None) -> None:
        if not span.is_recording():
            return
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        if finish is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [finish])
        served = getattr(self._inner, "served_by", None)
        if isinstance(served, str):
            span.set_attribute("kubebots.llm.endpoint", served)
