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
    assert [m["content"] for m in kept] == [
        "question number 7",
        "answer 7",
        "question number 8",
        "answer 8",
        "question number 9",
        "answer 9",
    ]
    assert budget.dropped == 14 and budget.history <= 40


def test_a_message_too_long_for_the_window_is_refused() -> None:
    conversation = Conversation()
    conversation.add("user", "word " * 100)
    with pytest.raises(TooLong) as info:
        conversation.fit(words, window=50, reply=10)
    assert info.value.needed == 100 + MESSAGE_OVERHEAD and info.value.available == 40


def test_each_message_is_counted_once_through_the_cache(manager: PluginManager) -> None:
    from app.tokencache import TokenCounter

    client = manager.handle("tiny_window")
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
    import io

    from app.chat import ChatSession
    from app.render import Output

    out = io.StringIO()
    session = ChatSession(manager, Output(out, io.StringIO(), color=False), "tiny_window", max_tokens=20, temperature=0.0)
    for i in range(8):
        session.ask(f"message {i} with five words")
    assert session.last_budget.dropped > 0
    last_reply = session.conversation.messages[-1]["content"]
    assert "message 7 with five words" in last_reply and "message 0 " not in last_reply
    assert session.last_budget.system + session.last_budget.history + session.last_budget.reply <= 60


class WordCounter:
    """A Counter over ``words``: the TokenCounter shape (cached + count), remembering what it was asked."""

    def __init__(self) -> None:
        self.known: dict[str, int] = {}
        self.asked: list[str] = []
        self.looked_up = 0

    def count(self, text: str) -> int:
        if text not in self.known:
            self.asked.append(text)
            self.known[text] = words(text)
        return self.known[text]

    def cached(self, texts) -> list:
        self.looked_up += len(texts)
        return [self.known.get(text) for text in texts]


def reference_fit(conversation: Conversation, count, window: int, reply: int):
    """fit as it was before batching: one count per message, newest first (the oracle)."""
    system = count(conversation.system) if conversation.system else 0
    available = window - reply - system
    kept, used = [], 0
    for message in reversed(conversation.messages):
        cost = count(message["content"]) + MESSAGE_OVERHEAD
        if used + cost > available:
            if not kept:
                raise TooLong(cost, max(0, available))
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] != "user":
        used -= count(kept.pop(0)["content"]) + MESSAGE_OVERHEAD
    return kept, (window, reply, system, used, len(kept), len(conversation.messages) - len(kept))


def outcome(fit, *args):
    try:
        kept, budget = fit(*args)
    except TooLong as exc:
        return ("too long", exc.needed, exc.available)
    if not isinstance(budget, tuple):
        budget = (budget.window, budget.reply, budget.system, budget.history, budget.kept, budget.dropped)
    return ([id(m) for m in kept], budget)


def random_conversation(rng, size: int) -> Conversation:
    conversation = Conversation(system=" ".join("s" * rng.randint(0, 3) for _ in range(rng.randint(0, 5))).strip())
    for i in range(size):
        role = rng.choice(["user", "assistant", "user", "assistant", "assistant"])  # runs of either role, either first
        conversation.add(role, " ".join(f"w{i}" for _ in range(rng.randint(0, 30))))
    return conversation


def test_batched_fit_matches_the_one_count_per_message_fit() -> None:
    import random

    rng = random.Random(21)
    for trial in range(300):
        conversation = random_conversation(rng, rng.choice([0, 1, 2, 5, 40, 127, 128, 129, 300]))
        window, reply = rng.randint(0, 4000), rng.randint(0, 200)
        expected = outcome(reference_fit, conversation, words, window, reply)
        counter = WordCounter()
        assert outcome(conversation.fit, words, window, reply) == expected, trial  # a plain function
        assert outcome(conversation.fit, counter, window, reply) == expected, trial  # cold: nothing known
        assert outcome(conversation.fit, counter, window, reply) == expected, trial  # warm: known ones summed at once
        every = WordCounter()
        conversation.fit(every, 10**9, 0)
        assert outcome(conversation.fit, every, window, reply) == expected, trial  # every count known: no loop
        if conversation.messages:
            every.known.pop(rng.choice(conversation.messages)["content"])
            assert outcome(conversation.fit, every, window, reply) == expected, trial  # all known but one


def test_a_cold_counter_is_asked_only_for_what_the_old_fit_counted() -> None:
    import random

    rng = random.Random(6)
    for trial in range(100):
        conversation = random_conversation(rng, rng.choice([10, 200]))
        window = rng.randint(50, 3000)
        asked: list[str] = []
        outcome(reference_fit, conversation, lambda t, asked=asked: asked.append(t) or words(t), window, 20)
        counter = WordCounter()
        outcome(conversation.fit, counter, window, 20)
        assert counter.asked == list(dict.fromkeys(asked)), trial  # same texts, same order; no message past the cut


def test_a_warm_fit_of_a_long_history_looks_up_only_a_batch_past_what_fits() -> None:
    from app.history import _BATCH

    conversation = Conversation(system="be brief")
    for i in range(2000):
        conversation.add("user" if i % 2 == 0 else "assistant", f"message {i} of the chat")  # 5 words + 4 = 9
    counter = WordCounter()
    kept, budget = conversation.fit(counter, window=200, reply=20)
    assert budget.kept == len(kept) == 18 and kept[0]["content"] == "message 1982 of the chat"  # 19 fit; the 1st is a reply
    assert len(counter.asked) == 1 + 20  # the system prompt, the 19 that fit and the one that did not
    counter.looked_up = 0
    assert conversation.fit(counter, window=200, reply=20) == (kept, budget)
    assert counter.looked_up <= _BATCH and len(counter.asked) == 21


def test_too_long_is_raised_the_same_way_cold_and_warm() -> None:
    conversation = Conversation(system="two words")
    conversation.add("user", "short")
    conversation.add("assistant", "word " * 100)
    counter = WordCounter()
    for _ in range(2):  # cold, then every count known
        with pytest.raises(TooLong) as info:
            conversation.fit(counter, window=60, reply=10)
        assert (info.value.needed, info.value.available) == (100 + MESSAGE_OVERHEAD, 48)
    with pytest.raises(TooLong) as info:
        conversation.fit(counter, window=5, reply=10)  # not even the system prompt fits
    assert info.value.available == 0


def test_fit_through_a_token_counter_asks_a_sandboxed_plugin_nothing_when_warm(manager: PluginManager) -> None:
    from app.tokencache import TokenCounter

    client = manager.handle("tiny_window")
    client.start()  # its window is known from its hello
    counter = TokenCounter(client)
    conversation = Conversation(system="be brief")
    for i in range(6):
        conversation.add("user", f"q{i} a b")
        conversation.add("assistant", f"r{i} c")
    calls_before = client.stats.calls
    first = conversation.fit(counter, client.context_window, reply=20)
    asked = client.stats.calls - calls_before
    assert conversation.fit(counter, client.context_window, reply=20) == first
    assert client.stats.calls - calls_before == asked  # the warm fit asked nothing
    assert first == conversation.fit(client.count_tokens, client.context_window, reply=20)  # same as uncached
    assert 0 < first[1].kept < len(conversation.messages)  # the window trimmed some: the cut was exercised


@pytest.mark.parametrize("fitting", [10, 127, 128, 129, 200])  # the cut inside the first batch, at its edge, past it, none
def test_a_history_that_fills_the_window_exactly_is_kept_up_to_the_cut(fitting: int) -> None:
    conversation = Conversation(system="one two")
    for i in range(200):
        conversation.add("user" if i % 2 == 0 else "assistant", f"message {i} of the chat")  # 5 words + 4 = 9
    window, reply = 2 + 9 * fitting + 30, 30  # exactly ``fitting`` messages fill what is left
    every = WordCounter()
    conversation.fit(every, 10**6, 0)  # every count known: the warm fits below sum them at once
    for counter in (WordCounter(), every, words):  # cold (one at a time), warm, a plain function
        kept, budget = conversation.fit(counter, window, reply)
        assert len(kept) == fitting - (fitting % 2)  # an odd count starts with a reply, which goes
        assert budget.history == 9 * len(kept) and budget.free == 9 * (fitting % 2)
        assert kept[-1] is conversation.messages[-1] and kept[0]["role"] == "user"
