"""The ConversationStore contract, run against memory, SQLite and (real) PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kubebots.runtime.conversations import (
    ConversationChanged,
    ConversationKey,
    ConversationStore,
    MessageRole,
    NewMessage,
    StoredMessage,
    StoredToolCall,
)
from kubebots.runtime.errors import StorageError

from .util import StoreFactory, new_key


def turns(n: int, prefix: str = "m") -> list[tuple[MessageRole, str]]:
    """``n`` messages alternating user/assistant, contents ``prefix0``, ``prefix1``..."""
    return [("user" if i % 2 == 0 else "assistant", f"{prefix}{i}") for i in range(n)]


def contents(messages: list[StoredMessage]) -> list[str]:
    return [m.content for m in messages]


def seqs(messages: list[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


async def test_implements_the_protocol(store: ConversationStore) -> None:
    assert isinstance(store, ConversationStore)


async def test_unknown_conversation_is_empty(store: ConversationStore) -> None:
    key = new_key()
    assert await store.recent(key, 10) == []
    assert await store.history(key) == []
    assert await store.exists(key) is False
    assert await store.delete(key) is False
    assert await store.list_conversations(key.bot_id, key.client_id) == []
    assert await store.delete_bot(key.bot_id) == 0


async def test_append_returns_the_new_count_and_recent_is_the_window(
    store: ConversationStore,
) -> None:
    key = new_key()
    assert await store.append(key, [("user", "hi"), ("assistant", "hello")]) == 2
    assert await store.append(key, [("user", "how are you?")]) == 3
    assert await store.append(key, []) == 3  # nothing to add: the count, unchanged

    window = await store.recent(key, 2)
    assert contents(window) == ["hello", "how are you?"]
    assert seqs(window) == [2, 3]
    assert [m.role for m in window] == ["assistant", "user"]
    assert contents(await store.recent(key, 100)) == ["hi", "hello", "how are you?"]
    assert await store.recent(key, 0) == []


async def test_messages_keep_their_text_exactly(store: ConversationStore) -> None:
    key = new_key()
    texts = [
        "",
        "  spaced  ",
        "línea\nnueva\ttab",
        "emoji 🤖 and 中文",
        "'; DROP TABLE x; --",
        "%s {t}",
    ]
    await store.append(key, [("user", t) for t in texts])
    assert contents(await store.history(key)) == texts


async def test_created_at_is_aware_utc_and_current(store: ConversationStore) -> None:
    key = new_key()
    before = datetime.now(UTC) - timedelta(seconds=5)
    await store.append(key, turns(2))
    for message in await store.history(key):
        assert message.created_at.utcoffset() == timedelta(0)
        assert before <= message.created_at <= datetime.now(UTC) + timedelta(seconds=5)


async def test_history_pages_by_offset_and_limit(store: ConversationStore) -> None:
    key = new_key()
    await store.append(key, turns(10))
    assert contents(await store.history(key)) == [f"m{i}" for i in range(10)]
    assert seqs(await store.history(key, offset=3, limit=4)) == [4, 5, 6, 7]
    assert seqs(await store.history(key, offset=8)) == [9, 10]
    assert seqs(await store.history(key, offset=8, limit=5)) == [9, 10]
    assert await store.history(key, offset=10) == []
    assert await store.history(key, offset=50, limit=5) == []
    assert await store.history(key, limit=0) == []


async def test_exists_and_delete(store: ConversationStore) -> None:
    key = new_key()
    await store.append(key, turns(3))
    assert len(await store.history(key)) == 3
    assert await store.exists(key) is True
    assert await store.delete(key) is True
    assert await store.exists(key) is False
    assert len(await store.history(key)) == 0
    assert await store.delete(key) is False
    # A deleted conversation starts again at seq 1.
    assert await store.append(key, [("user", "again")]) == 1
    assert seqs(await store.history(key)) == [1]


async def test_list_conversations_is_sorted_and_per_client(store: ConversationStore) -> None:
    key = new_key()
    for conversation in ["b", "a", "c", "B", "ä"]:
        await store.append(key._replace(conversation_id=conversation), turns(2))
    await store.append(
        new_key(bot_id=key.bot_id)._replace(conversation_id="other-client"), turns(1)
    )
    await store.append(
        new_key(client_id=key.client_id)._replace(conversation_id="other-bot"), turns(1)
    )
    assert await store.list_conversations(key.bot_id, key.client_id) == sorted(
        ["b", "a", "c", "B", "ä"]
    )


async def test_delete_bot_removes_only_that_bot(store: ConversationStore) -> None:
    doomed = new_key()
    survivor = new_key(client_id=doomed.client_id)  # same client, same conversation id
    await store.append(doomed, turns(3))
    await store.append(new_key(bot_id=doomed.bot_id), turns(2))
    await store.append(survivor, turns(4))
    assert await store.delete_bot(doomed.bot_id) == 5
    assert await store.exists(doomed) is False
    assert await store.list_conversations(doomed.bot_id, doomed.client_id) == []
    assert len(await store.history(survivor)) == 4
    assert await store.delete_bot(doomed.bot_id) == 0


async def test_same_conversation_id_never_mixes_across_clients_or_bots(
    store: ConversationStore,
) -> None:
    base = new_key()
    other_client = base._replace(client_id=base.client_id + "-x")
    other_bot = base._replace(bot_id=base.bot_id + "-x")
    await store.append(base, [("user", "base")])
    await store.append(other_client, [("user", "client"), ("assistant", "client2")])
    await store.append(other_bot, [("user", "bot")])

    assert contents(await store.history(base)) == ["base"]
    assert contents(await store.recent(other_client, 5)) == ["client", "client2"]
    assert contents(await store.history(other_bot)) == ["bot"]
    assert await store.delete(other_client) is True
    assert len(await store.history(base)) == 1
    assert len(await store.history(other_bot)) == 1


async def test_ids_that_look_like_prefixes_do_not_collide(store: ConversationStore) -> None:
    """("a", "bc") and ("ab", "c") are different keys, however a store joins them."""
    bot = new_key().bot_id
    await store.append(ConversationKey(bot, "a", "bc"), [("user", "one")])
    await store.append(ConversationKey(bot, "ab", "c"), [("user", "two")])
    assert contents(await store.history(ConversationKey(bot, "a", "bc"))) == ["one"]
    assert await store.list_conversations(bot, "a") == ["bc"]


async def test_multi_message_append_keeps_order(store: ConversationStore) -> None:
    key = new_key()
    batch = turns(7, prefix="batch")
    assert await store.append(key, batch) == 7
    stored = await store.history(key)
    assert [(m.role, m.content) for m in stored] == batch
    assert seqs(stored) == list(range(1, 8))


async def test_invalid_arguments_are_rejected_and_store_nothing(store: ConversationStore) -> None:
    key = new_key()
    with pytest.raises(ValueError):
        await store.append(key, [("user", "ok"), ("system", "no")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await store.append(key, [("user", "ok"), ("user", "nul\x00byte")])
    with pytest.raises(ValueError):
        await store.append(key, [("user", "lone \ud800 surrogate")])
    with pytest.raises(ValueError):
        await store.recent(key, -1)
    with pytest.raises(ValueError):
        await store.history(key, offset=-1)
    with pytest.raises(ValueError):
        await store.exists(key._replace(conversation_id="bad\x00id"))
    assert await store.exists(key) is False  # all or none: no partial batch


WEATHER = StoredToolCall("call_1", "get_weather", '{"city": "Paris"}')
TIME = StoredToolCall("call_2", "get_time", "{}")


def tool_round() -> list[NewMessage | tuple[MessageRole, str]]:
    """A user question, an assistant's two tool calls, their answers, the final reply."""
    return [
        ("user", "weather and time in Paris?"),
        NewMessage("assistant", "", tool_calls=(WEATHER, TIME)),
        NewMessage("tool", '{"temp": 21}', tool_call_id="call_1"),
        NewMessage("tool", "12:00", tool_call_id="call_2"),
        NewMessage("assistant", "21 degrees at noon"),
    ]


def shapes(messages: list[StoredMessage]) -> list[tuple[object, ...]]:
    return [(m.seq, m.role, m.content, m.tool_calls, m.tool_call_id) for m in messages]


EXPECTED_ROUND = [
    (1, "user", "weather and time in Paris?", (), None),
    (2, "assistant", "", (WEATHER, TIME), None),
    (3, "tool", '{"temp": 21}', (), "call_1"),
    (4, "tool", "12:00", (), "call_2"),
    (5, "assistant", "21 degrees at noon", (), None),
]


async def test_tool_messages_are_stored_in_order_with_their_calls(
    store: ConversationStore,
) -> None:
    key = new_key()
    assert await store.append(key, tool_round()[:2], after=0) == 2
    assert await store.append(key, tool_round()[2:], after=2) == 5
    assert shapes(await store.history(key)) == EXPECTED_ROUND
    assert shapes(await store.recent(key, 4)) == EXPECTED_ROUND[1:]
    assert shapes(await store.recent(key, 4)) == EXPECTED_ROUND[1:]  # a cached window alike
    assert shapes(await store.history(key, offset=2, limit=1)) == EXPECTED_ROUND[2:3]
    with pytest.raises(ConversationChanged):
        await store.append(key, [NewMessage("tool", "late", tool_call_id="call_1")], after=4)
    assert await store.append(key, [NewMessage("user", "thanks")]) == 6


async def test_tool_call_text_is_kept_exactly(store: ConversationStore) -> None:
    key = new_key()
    odd = StoredToolCall('id "quoted" 🤖', "name'; --", '{"a": "\\u00e9 %s {t}"}')
    await store.append(key, [NewMessage("assistant", "%s", tool_calls=(odd,))])
    await store.append(key, [NewMessage("tool", "", tool_call_id=odd.id)])
    stored = await store.history(key)
    assert stored[0].tool_calls == (odd,)
    assert stored[1].tool_call_id == odd.id


async def test_invalid_tool_messages_are_rejected_and_store_nothing(
    store: ConversationStore,
) -> None:
    key = new_key()
    bad: list[list[NewMessage | tuple[MessageRole, str]]] = [
        [("tool", "an answer without a call id")],
        [NewMessage("tool", "no id")],
        [NewMessage("user", "hi", tool_call_id="call_1")],
        [NewMessage("assistant", "x", tool_call_id="call_1")],
        [NewMessage("user", "hi", tool_calls=(WEATHER,))],
        [NewMessage("tool", "x", tool_calls=(WEATHER,), tool_call_id="call_1")],
        [NewMessage("assistant", "", tool_calls=(StoredToolCall("c", "f", "nul\x00"),))],
        [NewMessage("tool", "x", tool_call_id="lone \ud800")],
        [NewMessage("system", "no")],  # type: ignore[arg-type]
    ]
    for messages in bad:
        with pytest.raises(ValueError):
            await store.append(key, [("user", "ok"), *messages])
    assert await store.exists(key) is False


async def test_concurrent_appends_get_gapless_unique_seqs(store: ConversationStore) -> None:
    key = new_key()
    counts = await asyncio.gather(*(store.append(key, [("user", f"c{i}")]) for i in range(50)))
    assert sorted(counts) == list(range(1, 51))
    stored = await store.history(key)
    assert seqs(stored) == list(range(1, 51))
    assert sorted(contents(stored)) == sorted(f"c{i}" for i in range(50))


async def test_concurrent_batches_stay_contiguous(store: ConversationStore) -> None:
    key = new_key()
    await asyncio.gather(*(store.append(key, turns(3, prefix=f"b{i}-")) for i in range(20)))
    stored = await store.history(key)
    assert seqs(stored) == list(range(1, 61))
    for start in range(0, 60, 3):  # each batch of three is adjacent and in order
        prefix = stored[start].content.split("-")[0]
        assert contents(stored[start : start + 3]) == [f"{prefix}-{i}" for i in range(3)]


async def test_recent_on_a_long_conversation_returns_only_the_window(
    store: ConversationStore,
) -> None:
    key = new_key()
    for batch in range(10):
        await store.append(key, turns(500, prefix=f"{batch}:"))
    assert len(await store.history(key)) == 5000
    window = await store.recent(key, 20)
    assert seqs(window) == list(range(4981, 5001))
    assert contents(window)[-1] == "9:499"
    assert seqs(await store.history(key, offset=4990, limit=3)) == [4991, 4992, 4993]


async def test_close_is_idempotent_and_later_calls_fail(store: ConversationStore) -> None:
    key = new_key()
    await store.append(key, turns(1))
    await store.close()
    await store.close()
    with pytest.raises(StorageError):
        await store.append(key, turns(1))
    with pytest.raises(StorageError):
        await store.recent(key, 5)
    with pytest.raises(StorageError):
        await store.list_conversations(key.bot_id, key.client_id)


# -- appends at an expected position (``after``) ---------------------------------------------


async def test_append_after_the_expected_position_stores(store: ConversationStore) -> None:
    key = new_key()
    assert await store.append(key, turns(2), after=0) == 2
    assert await store.append(key, turns(3, "x"), after=2) == 5
    assert await store.append(key, [], after=5) == 5
    assert seqs(await store.history(key)) == [1, 2, 3, 4, 5]
    assert contents(await store.recent(key, 3)) == ["x0", "x1", "x2"]


@pytest.mark.parametrize("wrong", [0, 1, 3, 99])
async def test_append_after_another_position_raises_and_stores_nothing(
    store: ConversationStore, wrong: int
) -> None:
    key = new_key()
    await store.append(key, turns(2))
    before = await store.history(key)
    with pytest.raises(ConversationChanged) as caught:
        await store.append(key, turns(2, "late"), after=wrong)
    assert not isinstance(caught.value, StorageError)
    assert caught.value.expected == wrong
    assert caught.value.actual in (2, None)
    with pytest.raises(ConversationChanged):
        await store.append(key, [], after=wrong)
    assert await store.history(key) == before
    assert await store.append(key, turns(1, "next"), after=2) == 3


async def test_append_after_on_an_unknown_or_deleted_conversation(
    store: ConversationStore,
) -> None:
    key = new_key()
    with pytest.raises(ConversationChanged):
        await store.append(key, turns(1), after=1)
    assert await store.exists(key) is False
    await store.append(key, turns(2), after=0)
    assert await store.delete(key)
    with pytest.raises(ConversationChanged) as caught:
        await store.append(key, turns(2), after=2)
    assert caught.value.actual in (0, None)
    assert await store.append(key, turns(2), after=0) == 2


async def test_append_after_rejects_a_negative_position(store: ConversationStore) -> None:
    with pytest.raises(ValueError):
        await store.append(new_key(), turns(1), after=-1)


async def test_concurrent_appends_after_one_position_store_exactly_one(
    store: ConversationStore,
) -> None:
    key = new_key()
    await store.append(key, turns(2))
    results = await asyncio.gather(
        *(store.append(key, turns(2, f"w{i}-"), after=2) for i in range(8)),
        return_exceptions=True,
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert stored == [4]
    assert all(isinstance(r, ConversationChanged) for r in results if r not in stored)
    assert seqs(await store.history(key)) == [1, 2, 3, 4]


# -- durable backends: several instances on one database, restarts --------------------------


async def test_an_instance_that_read_before_another_wrote_gets_changed(
    open_durable: StoreFactory,
) -> None:
    """The race a cache cannot close alone: ``after`` catches it, and the window read next is
    the stored one."""
    first, second = await open_durable(), await open_durable()
    key = new_key()
    await first.append(key, turns(2, "a"))
    seen = await first.recent(key, 10)
    await second.append(key, turns(2, "b"), after=2)
    with pytest.raises(ConversationChanged):
        await first.append(key, turns(2, "c"), after=seen[-1].seq)
    fresh = await first.recent(key, 10)
    assert contents(fresh) == ["a0", "a1", "b0", "b1"]
    assert await first.append(key, turns(2, "c"), after=fresh[-1].seq) == 6


async def test_two_instances_appending_concurrently_stay_consistent(
    open_durable: StoreFactory,
) -> None:
    first, second = await open_durable(), await open_durable()
    key = new_key()
    await asyncio.gather(
        *(
            s.append(key, turns(2, prefix=f"{n}-{i}-"))
            for i in range(25)
            for n, s in enumerate((first, second))
        )
    )
    for view in (first, second):
        stored = await view.history(key)
        assert seqs(stored) == list(range(1, 101))
        for start in range(0, 100, 2):
            assert stored[start].content.endswith("-0") and stored[start + 1].content.endswith("-1")


async def test_tool_messages_survive_a_restart(open_durable: StoreFactory) -> None:
    key = new_key()
    first = await open_durable()
    await first.append(key, tool_round())
    await first.close()
    assert shapes(await (await open_durable()).history(key)) == EXPECTED_ROUND


async def test_messages_survive_a_restart(open_durable: StoreFactory) -> None:
    key = new_key()
    before = await open_durable()
    await before.append(key, turns(4))
    written = await before.history(key)
    await before.close()

    after = await open_durable()
    assert await after.history(key) == written
    assert await after.list_conversations(key.bot_id, key.client_id) == [key.conversation_id]
    assert await after.append(key, turns(1)) == 5


async def test_one_instance_sees_the_others_writes(open_durable: StoreFactory) -> None:
    writer, reader = await open_durable(), await open_durable()
    key = new_key()
    await writer.append(key, turns(3))
    assert len(await reader.history(key)) == 3
    assert await reader.delete(key) is True
    assert await writer.exists(key) is False


async def test_cancelled_appends_leave_the_store_consistent(store: ConversationStore) -> None:
    key = new_key()
    tasks = [asyncio.create_task(store.append(key, turns(2, prefix=f"t{i}-"))) for i in range(20)]
    for _ in range(3):
        await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    total = await store.append(key, [("user", "after")])
    stored = await store.history(key)
    assert seqs(stored) == list(range(1, total + 1))
    assert stored[-1].content == "after"
    assert total % 2 == 1  # whole pairs only, plus the last message


async def test_prune_deletes_only_the_bots_older_messages(store: ConversationStore) -> None:
    key = new_key()
    emptied = ConversationKey(key.bot_id, key.client_id, "quiet")
    other = new_key()
    await store.append(key, turns(4, "old"))
    await store.append(emptied, turns(2, "old"))
    await store.append(other, turns(2, "other"))
    await asyncio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await store.append(key, turns(2, "new"))

    assert await store.prune(key.bot_id, cutoff) == 6
    assert await store.prune(key.bot_id, cutoff) == 0
    # What is left keeps its positions; appends go on after it.
    assert seqs(await store.history(key)) == [5, 6]
    assert contents(await store.recent(key, 10)) == ["new0", "new1"]
    assert seqs(await store.history(key, offset=5)) == [6]
    assert seqs(await store.history(key, limit=1)) == [5]
    assert await store.append(key, turns(2, "later")) == 8
    # A conversation with nothing left is gone; another bot's are untouched, however old.
    assert not await store.exists(emptied)
    assert await store.list_conversations(key.bot_id, key.client_id) == ["conv"]
    assert contents(await store.history(other)) == ["other0", "other1"]
    assert await store.append(emptied, turns(1, "again")) == 1


async def test_prune_with_a_future_cutoff_empties_the_bot(store: ConversationStore) -> None:
    key = new_key()
    await store.append(key, turns(3))
    assert await store.prune(key.bot_id, datetime.now(UTC) + timedelta(days=1)) == 3
    assert not await store.exists(key)
    assert await store.append(key, turns(1)) == 1


async def test_prune_rejects_a_naive_cutoff(store: ConversationStore) -> None:
    key = new_key()
    await store.append(key, turns(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.prune(key.bot_id, datetime.now())
    assert await store.exists(key)
