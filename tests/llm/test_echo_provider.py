"""The offline echo provider: deterministic replies, word-count usage, stream == complete."""

from __future__ import annotations

from kubebots.runtime.llm import ChatMessage, Completion, EchoProvider, LLMProvider, Usage

HISTORY = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "first question"),
    ChatMessage("assistant", "echo: first question"),
    ChatMessage("user", "second  question, with   spaces "),
]


async def test_complete_echoes_the_last_user_message_with_word_counts() -> None:
    provider = EchoProvider()
    completion = await provider.complete(HISTORY)
    assert completion == Completion(
        "echo: second  question, with   spaces ",
        usage=Usage(prompt_tokens=3 + 2 + 3 + 4, completion_tokens=5),
    )
    assert completion.usage is not None and completion.usage.total_tokens == 17


async def test_complete_is_deterministic() -> None:
    provider = EchoProvider()
    assert [await provider.complete(HISTORY) for _ in range(3)] == [
        await EchoProvider().complete(HISTORY)
    ] * 3


async def test_stream_yields_words_that_join_to_the_complete_text() -> None:
    provider = EchoProvider()
    chunks = [chunk async for chunk in provider.stream(HISTORY)]
    assert chunks == ["echo: ", "second  ", "question, ", "with   ", "spaces "]
    assert "".join(chunks) == (await provider.complete(HISTORY)).content


async def test_without_a_user_message_the_reply_is_the_bare_prefix() -> None:
    provider = EchoProvider()
    assert (await provider.complete([ChatMessage("system", "hi")])).content == "echo: "
    assert [c async for c in provider.stream([])] == ["echo: "]


async def test_model_name_is_kept_and_it_is_an_llm_provider() -> None:
    provider = EchoProvider("my-echo")
    assert provider.model == "my-echo"
    assert isinstance(provider, LLMProvider)


async def test_close_is_idempotent() -> None:
    provider = EchoProvider()
    await provider.close()
    await provider.close()
    assert provider.closed
