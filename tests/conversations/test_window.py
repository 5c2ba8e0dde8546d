"""The window cache on its own: what it answers, what it keeps, what notifications drop."""

from __future__ import annotations

from datetime import UTC, datetime

from kubebots.runtime.conversations import ConversationKey, StoredMessage
from kubebots.runtime.conversations.window import (
    WindowCache,
    appended,
    bot_changed,
    conversation_token,
    deleted,
)

KEY = ConversationKey("bot", "client", "c1")
NOW = datetime.now(UTC)


def messages(first: int, last: int) -> list[StoredMessage]:
    return [
        StoredMessage(seq, "user" if seq % 2 else "assistant", f"m{seq}", NOW)
        for seq in range(first, last + 1)
    ]


def seqs(found: list[StoredMessage] | None) -> list[int] | None:
    return None if found is None else [m.seq for m in found]


ME, OTHER = "me", "other"


def live(capacity: int = 100) -> WindowCache:
    cache = WindowCache(capacity, origin=ME)
    cache.live(True)
    return cache


def fill(cache: WindowCache, key: ConversationKey, found: list[StoredMessage], limit: int) -> None:
    with cache.read(key) as read:
        read.fill(key, found, limit)


def test_a_cache_not_listening_answers_and_keeps_nothing() -> None:
    cache = WindowCache()
    fill(cache, KEY, messages(1, 4), 10)
    assert cache.lookup(KEY, 10) is None and len(cache) == 0


def test_a_read_window_answers_smaller_and_complete_reads() -> None:
    cache = live()
    fill(cache, KEY, messages(1, 4), 10)  # fewer than asked: the whole conversation
    assert seqs(cache.lookup(KEY, 10)) == [1, 2, 3, 4]
    assert seqs(cache.lookup(KEY, 50)) == [1, 2, 3, 4]
    assert seqs(cache.lookup(KEY, 2)) == [3, 4]
    assert cache.lookup(KEY, 0) == []
    other = KEY._replace(conversation_id="c2")
    fill(cache, other, messages(11, 20), 10)  # as many as asked: older ones may exist
    assert seqs(cache.lookup(other, 10)) == list(range(11, 21))
    assert cache.lookup(other, 11) is None


def test_an_empty_conversation_is_cached_and_zero_limits_fill_nothing() -> None:
    cache = live()
    fill(cache, KEY, [], 0)
    assert cache.lookup(KEY, 5) is None
    fill(cache, KEY, [], 5)
    assert cache.lookup(KEY, 5) == []


def test_own_appends_extend_a_window_and_keep_what_was_asked() -> None:
    cache = live()
    fill(cache, KEY, messages(1, 2), 4)
    cache.stored(KEY, messages(3, 4))
    assert seqs(cache.lookup(KEY, 4)) == [1, 2, 3, 4]
    cache.stored(KEY, messages(5, 6))  # past the 4 asked: the oldest go, completeness too
    assert seqs(cache.lookup(KEY, 4)) == [3, 4, 5, 6]
    assert cache.lookup(KEY, 5) is None
    cache.stored(KEY, messages(9, 10))  # not after the window: it is forgotten
    assert cache.lookup(KEY, 1) is None
    cache.stored(KEY, messages(11, 12))  # no window: appends alone do not make one
    assert cache.lookup(KEY, 1) is None


def test_notifications_drop_what_other_writers_changed() -> None:
    cache = live()
    fill(cache, KEY, messages(1, 4), 10)
    cache.notified(appended(KEY, ME) + "6")  # this store's own: applied when it returned
    cache.notified(deleted(KEY, ME))
    assert seqs(cache.lookup(KEY, 10)) == [1, 2, 3, 4]
    cache.notified(appended(KEY, OTHER) + "4")  # nothing this window lacks
    assert seqs(cache.lookup(KEY, 10)) == [1, 2, 3, 4]
    cache.notified(appended(KEY, OTHER) + "6")  # another writer's append
    assert cache.lookup(KEY, 10) is None

    fill(cache, KEY, messages(1, 6), 10)
    cache.notified(deleted(KEY, OTHER))
    assert cache.lookup(KEY, 10) is None

    other_bot = ConversationKey("bot-2", "client", "c1")
    fill(cache, KEY, messages(1, 6), 10)
    fill(cache, KEY._replace(conversation_id="c2"), messages(1, 2), 10)
    fill(cache, other_bot, messages(1, 2), 10)
    cache.notified(bot_changed("bot", OTHER))
    assert cache.lookup(KEY, 10) is None
    assert cache.lookup(KEY._replace(conversation_id="c2"), 10) is None
    assert seqs(cache.lookup(other_bot, 10)) == [1, 2]
    cache.notified("z:something-newer")  # an unknown payload: nothing is trusted
    assert cache.lookup(other_bot, 10) is None


def test_payloads_never_carry_ids() -> None:
    key = ConversationKey("secret-bot", "secret-client", "secret-conversation")
    for payload in (appended(key, OTHER), deleted(key, OTHER), bot_changed(key.bot_id, OTHER)):
        assert "secret" not in payload
        assert len(payload) < 64
    assert conversation_token(key) != conversation_token(key._replace(client_id="other"))


def test_a_read_overtaken_by_a_notification_or_a_reconnect_does_not_fill() -> None:
    cache = live()
    with cache.read(KEY) as read:
        cache.notified(appended(KEY, OTHER) + "7")  # committed after the read's snapshot, maybe
        read.fill(KEY, messages(1, 6), 10)
    assert cache.lookup(KEY, 10) is None
    with cache.read(KEY) as read:
        cache.live(False)
        cache.live(True)
        read.fill(KEY, messages(1, 7), 10)
    assert cache.lookup(KEY, 10) is None
    with cache.read(KEY) as read:
        cache.stored(KEY, messages(8, 9))  # this store appended meanwhile
        read.fill(KEY, messages(1, 7), 10)
    assert cache.lookup(KEY, 10) is None
    fill(cache, KEY, messages(1, 9), 10)  # a read nothing overtook
    assert seqs(cache.lookup(KEY, 10)) == list(range(1, 10))
    assert cache.reading == {} and cache.spoiled == set()


def test_losing_the_listener_clears_the_cache() -> None:
    cache = live()
    fill(cache, KEY, messages(1, 2), 10)
    cache.live(False)
    assert len(cache) == 0 and cache.lookup(KEY, 10) is None
    cache.live(True)
    assert cache.lookup(KEY, 10) is None


def test_the_least_recently_used_conversation_goes_first() -> None:
    cache = live(capacity=2)
    keys = [KEY._replace(conversation_id=f"c{i}") for i in range(3)]
    fill(cache, keys[0], messages(1, 2), 10)
    fill(cache, keys[1], messages(1, 2), 10)
    assert cache.lookup(keys[0], 10) is not None  # now the most recently used
    fill(cache, keys[2], messages(1, 2), 10)
    assert len(cache) == 2
    assert cache.lookup(keys[1], 10) is None
    assert cache.lookup(keys[0], 10) is not None and cache.lookup(keys[2], 10) is not None


def test_a_cache_of_size_zero_stays_off() -> None:
    cache = live(capacity=0)
    fill(cache, KEY, messages(1, 2), 10)
    assert cache.lookup(KEY, 10) is None and len(cache) == 0
