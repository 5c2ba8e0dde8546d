"""A turn's tool loop: ask the model, run the server-side tools it calls, ask again.

One :class:`ToolLoop` serves one turn of a :class:`~kubebots.runtime.bot.DynaBot`. Each LLM call
offers the bot's tools (``settings["tools"]``: the toolset's specs, then the request's own
``tools``, the client's). A reply calling server tools is answered by running them, in parallel
(:meth:`Toolset.run <kubebots.runtime.tools.Toolset.run>` never raises for a tool's failure: the
model reads the error), and the model is asked again with the reply and one ``tool`` message
per call, in call order. The loop ends with a reply that calls no server tool: text, or calls
of the client's tools (returned to the client: only those calls; server calls in that same
reply are not run, so the client's history never misses a result).

Limits: ``tools.maxToolSteps`` replies with server calls, and ``tools.deadlineSeconds`` for the
whole loop (a tool's own timeout is cut to what is left). When either runs out, one last call
with ``tool_choice: "none"`` gets the answer (a model that still calls tools then ends the
turn with what it said). The request's ``tool_choice`` applies to the first call only.

Approval: a call of a tool whose spec ``requires_approval`` is not run. The reply's other
calls run, then the loop stops with the waiting calls (:attr:`LoopState.pending`, an
:class:`ApprovalRequired` event, ``finish_reason`` ``"tool_calls"`` and no text); a stored
turn resumes them with :meth:`ToolLoop.resume`. Without ``approvals`` (the stateless routes,
which cannot resume) those tools are not offered at all, and a call naming one is a tool error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from .errors import MessageRejectedError
from .llm.base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageSink,
    joined,
)
from .llm.echo import function_names
from .tools import (
    ApprovalRequired,
    ToolEvent,
    ToolFinished,
    ToolResult,
    Toolset,
    ToolStarted,
    TurnCompletion,
    specs_json,
)
from .turns import added_usage

LoopEvent = Delta | ToolEvent


@dataclass(frozen=True, slots=True)
class LoopLimits:
    """Replies with server tool calls one run may answer, and seconds for the whole run."""

    steps: int
    seconds: float


@dataclass(slots=True)
class LoopState:
    """What a run produced, filled as it goes: the messages to store after the turn's new ones
    (every step's assistant message and tool results, then the final reply), the usage summed
    over every LLM call, the tool calls that ran (and the rejected ones), and how it ended."""

    added: list[ChatMessage] = field(default_factory=list)
    usage: Usage | None = None
    tool_runs: list[ToolFinished] = field(default_factory=list)
    reply: Completion = field(default_factory=lambda: Completion(""))
    pending: tuple[ToolCall, ...] = ()

    @property
    def ran_tools(self) -> bool:
        return bool(self.tool_runs)

    def completion(self) -> TurnCompletion:
        """The turn's result: the final reply (its text and the client's calls), usage summed."""
        reply = self.reply
        return TurnCompletion(
            reply.content,
            self.usage,
            reply.tool_calls,
            reply.finish_reason,
            tool_runs=tuple(self.tool_runs),
            pending=self.pending,
        )


class ToolLoop:
    """One turn's loop over ``llm`` with ``toolset`` (None: no server tools). ``settings`` are
    the request's; a client tool named like a server tool is a :class:`MessageRejectedError`."""

    def __init__(
        self,
        llm: LLMProvider,
        toolset: Toolset | None,
        *,
        limits: LoopLimits,
        settings: Settings | None = None,
        approvals: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._llm = llm
        self._toolset = toolset
        self._limits = limits
        self._clock = clock
        specs = toolset.specs if toolset is not None else ()
        self._offered = {s.name: s for s in specs if approvals or not s.requires_approval}
        self._client = set(function_names((settings or {}).get("tools")))
        clash = sorted(self._client & set(self._offered))
        if clash:
            raise MessageRejectedError(
                f"the request's tools {clash} have the names of the bot's own tools",
                detail={"tools": clash},
            )
        self._settings = settings
        if self._offered:
            client = list((settings or {}).get("tools") or [])
            offered = specs_json(list(self._offered.values()))
            self._settings = {**(settings or {}), "tools": [*offered, *client]}

    def _is_client(self, name: str | None) -> bool:
        """A call the client runs: one of its tools, or any call when no server tool is."""
        if name in self._client:
            return True
        return not self._offered and (self._toolset is None or name not in self._toolset)

    def _step_settings(self, step: int, forced: bool) -> Settings | None:
        settings = self._settings
        if settings is None or not self._offered:
            return settings
        if forced:
            return {**settings, "tool_choice": "none"}
        if step > 0 and "tool_choice" in settings:
            return {k: v for k, v in settings.items() if k != "tool_choice"}
        return settings

    async def complete(self, prompt: Sequence[ChatMessage]) -> TurnCompletion:
        """:meth:`run` to its end (nothing stored): the turn's result."""
        state = LoopState()
        async with aclosing(self.run(prompt, state)) as events:
            async for _ in events:
                pass
        return state.completion()

    async def deltas(
        self, prompt: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncGenerator[Delta, None]:
        """:meth:`run` streamed, its deltas only (nothing stored, no tool events)."""
        events = self.run(prompt, LoopState(), stream=True, on_usage=on_usage)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Delta):
                    yield event

    async def run(
        self,
        prompt: Sequence[ChatMessage],
        state: LoopState,
        *,
        stream: bool = False,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[LoopEvent, None]:
        """Answer ``prompt``, filling ``state``. Yields the text deltas of every step as they
        come (``stream``), the client's tool call pieces (re-indexed from 0), a
        :class:`ToolStarted` per server call before it runs and a :class:`ToolFinished` per call
        after (in call order), :class:`ApprovalRequired` when stopping for approval, and last a
        ``Delta`` with the turn's ``finish_reason``. ``on_usage`` gets the summed usage once."""
        prompt = list(prompt)
        started = self._clock()
        step, forced = 0, False
        while True:
            settings = self._step_settings(step, forced)
            asked = _Step()
            async for delta in self._ask(prompt, settings, stream, asked):
                yield delta
            reply = asked.reply
            state.usage = added_usage(state.usage, reply.usage)
            server = tuple(c for c in reply.tool_calls if not self._is_client(c.name))
            client = tuple(c for c in reply.tool_calls if self._is_client(c.name))
            if client or not server or forced:
                finish = reply.finish_reason
                if not client and finish == "tool_calls":
                    finish = "stop"
                state.reply = dataclasses.replace(reply, tool_calls=client, finish_reason=finish)
                state.added.append(ChatMessage("assistant", reply.content, client))
                break
            step += 1
            calling = ChatMessage("assistant", reply.content, server)
            state.added.append(calling)
            prompt.append(calling)
            waiting = tuple(c for c in server if self._needs_approval(c.name))
            runnable = [c for c in server if c not in waiting]
            left = self._limits.seconds - (self._clock() - started)
            async for event in self.run_calls(runnable, state, prompt, within=left):
                yield event
            if waiting:
                state.pending = waiting
                state.reply = Completion("", None, (), "tool_calls")
                yield ApprovalRequired(waiting)
                break
            left = self._limits.seconds - (self._clock() - started)
            forced = step >= self._limits.steps or left <= 0
        if on_usage is not None and state.usage is not None:
            on_usage(state.usage)
        yield Delta(finish_reason=state.reply.finish_reason)

    async def resume(
        self,
        prompt: Sequence[ChatMessage],
        pending: Sequence[ToolCall],
        approvals: Mapping[str, bool],
        state: LoopState,
        *,
        stream: bool = False,
        on_usage: UsageSink | None = None,
    ) -> AsyncGenerator[LoopEvent, None]:
        """Answer the ``pending`` calls (the approved ones run, the others are answered as
        rejected), then :meth:`run` on; ``prompt`` ends with the calls' group so far."""
        prompt = list(prompt)
        rejected = {c.id for c in pending if not approvals[c.id]}
        calls = self.run_calls(pending, state, prompt, within=self._limits.seconds, no=rejected)
        async for finished in calls:
            yield finished
        async for event in self.run(prompt, state, stream=stream, on_usage=on_usage):
            yield event

    async def run_calls(
        self,
        calls: Sequence[ToolCall],
        state: LoopState,
        prompt: list[ChatMessage],
        *,
        within: float,
        no: set[str] | frozenset[str] = frozenset(),
    ) -> AsyncGenerator[ToolEvent, None]:
        """Run ``calls`` in parallel (those in ``no`` are answered as rejected); their ``tool``
        messages go to ``state.added`` and ``prompt``, in call order."""
        for call in calls:
            if call.id not in no:
                yield ToolStarted(call)
        results = await asyncio.gather(*(self._run_one(c, within, c.id in no) for c in calls))
        for call, result in zip(calls, results, strict=True):
            answer = ChatMessage("tool", result.content, tool_call_id=call.id)
            state.added.append(answer)
            prompt.append(answer)
            finished = ToolFinished(call, result)
            state.tool_runs.append(finished)
            yield finished

    async def _run_one(self, call: ToolCall, within: float, rejected: bool) -> ToolResult:
        toolset = self._toolset
        if toolset is not None and rejected:
            return toolset.rejected(call)
        if rejected:
            return ToolResult(f"the user rejected this call of {call.name}", is_error=True)
        if toolset is None or (call.name in toolset and call.name not in self._offered):
            return ToolResult(f"error: there is no tool {call.name!r}", is_error=True)
        return await toolset.run(call, within=max(0.0, within))

    def _needs_approval(self, name: str) -> bool:
        spec = self._offered.get(name)
        return spec is not None and spec.requires_approval

    async def _ask(
        self, prompt: list[ChatMessage], settings: Settings | None, stream: bool, step: _Step
    ) -> AsyncGenerator[Delta, None]:
        """One LLM call; streamed, its text and client call pieces are passed on as they come
        (server call pieces and the finish reason are held back)."""
        if not stream:
            step.reply = await self._llm.complete(prompt, settings=settings)
            return
        pieces: list[Delta] = []
        reported: list[Usage] = []
        indexes: dict[int, int | None] = {}  # a call's index -> the client's index (None: server)
        async for delta in self._llm.stream(prompt, settings=settings, on_usage=reported.append):
            pieces.append(delta)
            calls: list[ToolCallDelta] = []
            for piece in delta.tool_calls:
                if piece.index not in indexes:
                    client = self._is_client(piece.name)
                    count = sum(1 for i in indexes.values() if i is not None)
                    indexes[piece.index] = count if client else None
                index = indexes[piece.index]
                if index is not None:
                    calls.append(dataclasses.replace(piece, index=index))
            if delta.content or calls:
                yield Delta(delta.content, tuple(calls))
        step.reply = joined(pieces, reported[-1] if reported else None)


@dataclass(slots=True)
class _Step:
    """One LLM call's reply, once it is complete."""

    reply: Completion = field(default_factory=lambda: Completion(""))
