"""History trimming: the oldest messages go first, measured with the plugin's own count_tokens."""

from __future__ import annotations

import pytest

from app import PluginManager
from app.history import MESSAGE_OVERHEAD, Conversation, TooLong

pytestmark = pytest.mark.timeout(30)


def words(text: str) -> int:
    return len(text.split())


def test_everything_fits_in_a_large_window() -> None:
    conversation = Conversation(system="be brief")
    for i in range(3):
        conversation.add("user", f"question {i}")
        conversation.add("assistant", f"answer {i}")
    kept, budget = conversation.fit(words, window=1000, reply=100)
    assert kept == conversation.messages
    assert (budget.system, budget.kept, budget.dropped) == (2, 6, 0)
    assert budget.history == 6 * (2 + MESSAGE_OVERHEAD)


def test_oldest_messages_are_dropped_first_and_history_opens_with_the_user() -> None:
    conversation = Conversation()
    for i in range(10):
        conversation.add("user", f"question number {i}")  # 3 words + 4 overhead = 7
        conversation.add("assistant", f"answer {i}")  # 2 words + 4 overhead = 6
    kept, budget = conversation.fit(words, window=50, reply=10)  # 40 tokens for history
    assert kept[-1]["content"] == "answer 9"
    assert kept[0]["role"] == "user"
    assert [m["content"] for m in kept] == ["question number 7", "answer 7", "question number 8", "answer 8", "question number 9", "answer 9"]
    assert budget.dropped == 14 and budget.history <= 40


def test_a_message_too_long_for_the_window_is_refused() -> None:
    conversation = Conversation()
    conversation.add("user", "word " * 100)
    with pytest.raises(TooLong) as info:
        conversation.fit(words, window=50, reply=10)
    assert info.value.needed == 100 + MESSAGE_OVERHEAD and info.value.available == 40


def test_each_message_is_counted_once_through_the_cache(manager: PluginManager) -> None:
    from app.tokencache import TokenCounter

    client = manager.client("tiny_window")
    counter = TokenCounter(client)
    conversation = Conversation()
    for i in range(6):
        conversation.add("user", f"q{i} a b")
        conversation.add("assistant", f"r{i} c")
    calls_before = client.stats.calls
    kept, _ = conversation.fit(counter.count, client.context_window, reply=20)
    first = client.stats.calls - calls_before
    conversation.fit(counter.count, client.context_window, reply=20)
    assert 0 < first <= len(conversation.messages)
    assert client.stats.calls - calls_before == first  # the second fit asked the plugin nothing


def test_the_plugin_sees_only_the_trimmed_history(manager: PluginManager, home) -> None:
    from app.chat import ChatSession
    from app.render import Output
    import io

    out = io.StringIO()
    session = ChatSession(manager, Output(out, io.StringIO(), color=False), "tiny_window", max_tokens=20, temperature=0.0)
    for i in range(8):
        session.ask(f"message {i} with five words")
    assert session.last_budget.dropped > 0
    last_reply = session.conversation.messages[-1]["content"]
    assert "message 7 with five words" in last_reply and "message 0 " not in last_reply
    assert session.last_budget.system + session.last_budget.history + session.last_budget.reply <= 60
