"""TokenCounter: each distinct (plugin, text) is counted once; bounded; dropped when the file changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.tokencache import TokenCounter


class FakeClient:
    """Counts words and remembers every text it was asked about."""

    def __init__(self, path: Path | None = None, pid: int | None = 100) -> None:
        self.config = SimpleNamespace(path=path) if path is not None else None
        self.pid = pid
        self.asked: list[str] = []
        self.fail_on: str | None = None

    def count_tokens(self, text: str) -> int:
        if text == self.fail_on:
            raise RuntimeError("plugin failed")
        self.asked.append(text)
        return len(text.split())


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "words_plugin.py"
    path.write_text("# a plugin\n")
    return path


def test_each_distinct_text_is_asked_once(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client)
    history = ["one two", "three", "one two", "four five six"]
    assert counter.count_many(history) == [2, 1, 2, 3]
    assert client.asked == ["one two", "three", "four five six"]  # the duplicate was asked once
    assert counter.count_many(history) == [2, 1, 2, 3]
    assert counter.count("three") == 1
    assert len(client.asked) == 3  # nothing new asked
    assert (counter.hits, counter.misses) == (5, 3)


def test_count_and_count_many_share_the_cache(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client)
    assert counter.count("a b c") == 3
    assert counter.count_many(["a b c", "d"]) == [3, 1]
    assert client.asked == ["a b c", "d"]
    assert counter.count_many([]) == []


def test_equal_texts_from_different_objects_hit(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client)
    counter.count("x " * 50)
    assert counter.count("".join(["x "] * 50)) == 50  # a new str object with the same content
    assert len(client.asked) == 1


def test_the_cache_is_a_bounded_lru(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client, maxsize=3)
    counter.count_many(["a", "b", "c"])
    counter.count("a")  # a is now the most recently used
    counter.count("d")  # evicts b, the least recently used
    assert len(counter) == 3
    client.asked.clear()
    counter.count_many(["a", "c", "d"])
    assert client.asked == []
    counter.count("b")
    assert client.asked == ["b"]
    assert len(counter) == 3


def test_a_changed_plugin_file_drops_every_count(plugin_file: Path) -> None:
    client = FakeClient(plugin_file, pid=100)
    counter = TokenCounter(client)
    counter.count("hello world")
    client.pid = 101  # restarted, file unchanged: the counts survive
    counter.count("hello world")
    assert client.asked == ["hello world"]
    plugin_file.write_text("# a plugin, edited\n")
    stat = plugin_file.stat()
    os.utime(plugin_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    client.pid = 102  # restarted with the new file
    counter.count("hello world")
    assert client.asked == ["hello world", "hello world"]
    assert len(counter) == 1


def test_the_file_is_checked_only_when_the_process_changes(plugin_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient(plugin_file, pid=7)
    counter = TokenCounter(client)
    stats = []
    real_stat = os.stat
    monkeypatch.setattr("app.tokencache.os.stat", lambda p: stats.append(p) or real_stat(p))
    counter.count("a")
    counter.count_many(["a", "b"])
    counter.count("a")
    assert len(stats) == 1
    client.pid = None  # not running: checked every time
    counter.count("a")
    counter.count("a")
    assert len(stats) == 3


def test_a_client_without_a_file_is_its_own_identity() -> None:
    client = FakeClient(path=None, pid=None)
    counter = TokenCounter(client)
    assert counter.identity() == ("object", id(client))
    counter.count_many(["a", "a b"])
    counter.count_many(["a", "a b"])
    assert client.asked == ["a", "a b"]


def test_errors_propagate_and_cache_only_what_was_answered(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    client.fail_on = "bad"
    counter = TokenCounter(client)
    with pytest.raises(RuntimeError):
        counter.count_many(["good", "bad", "later"])
    assert client.asked == ["good"]
    client.fail_on = None
    assert counter.count_many(["good", "bad", "later"]) == [1, 1, 1]
    assert client.asked == ["good", "bad", "later"]


def test_bad_input_and_bad_answers_are_refused(plugin_file: Path) -> None:
    counter = TokenCounter(FakeClient(plugin_file))
    with pytest.raises(TypeError):
        counter.count_many(["ok", b"bytes"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        TokenCounter(FakeClient(plugin_file), maxsize=0)
    liar = FakeClient(plugin_file)
    liar.count_tokens = lambda text: -1  # type: ignore[method-assign]
    with pytest.raises(TypeError):
        TokenCounter(liar).count("x")


def test_threads_share_one_counter(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client, maxsize=64)
    texts = [f"text {i} " * (i % 5 + 1) for i in range(200)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert counter.count_many(texts) == [len(t.split()) for t in texts]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(counter) <= 64


def test_with_a_real_sandboxed_plugin(manager) -> None:
    client = manager.handle("echo")
    counter = TokenCounter(client)
    first = counter.count_many(["hello there", "general kenobi"])
    calls = client.stats.calls
    assert counter.count_many(["hello there", "general kenobi"]) == first
    assert client.stats.calls == calls
    assert counter.identity()[1] == os.fspath(client.config.path)


@pytest.mark.timeout(10)
def test_cached_gives_the_known_counts_and_asks_nothing(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client)
    assert counter.cached(["a b", "c"]) == [None, None]
    counter.count_many(["a b", "d e f"])
    client.asked.clear()
    assert counter.cached(["d e f", "c", "a b", "d e f", b"a b"]) == [3, None, 2, 3, None]  # type: ignore[list-item]
    assert counter.cached([]) == []
    assert client.asked == [] and (counter.hits, counter.misses) == (3, 2)
    with pytest.raises(TypeError):
        counter.count(b"a b")  # type: ignore[arg-type]


@pytest.mark.timeout(10)
def test_cached_hits_become_the_most_recently_used(plugin_file: Path) -> None:
    client = FakeClient(plugin_file)
    counter = TokenCounter(client, maxsize=3)
    counter.count_many(["a", "b", "c"])
    assert counter.cached(["a", "x", "b", "a"]) == [1, None, 1, 1]  # c is now the least recently used
    counter.count("d")
    client.asked.clear()
    assert counter.cached(["a", "b", "c", "d"]) == [1, 1, None, 1]
    counter.count("e")  # evicts a: the lookup just above refreshed a, b and d in that order
    assert counter.cached(["a", "b", "d", "e"]) == [None, 1, 1, 1]
    assert client.asked == ["e"]


@pytest.mark.timeout(10)
def test_cached_drops_every_count_when_the_plugin_file_changed(plugin_file: Path) -> None:
    client = FakeClient(plugin_file, pid=100)
    counter = TokenCounter(client)
    counter.count_many(["hello world", "bye"])
    client.pid = 101  # restarted, file unchanged
    assert counter.cached(["hello world", "bye"]) == [2, 1]
    plugin_file.write_text("# a plugin, edited\n")
    stat = plugin_file.stat()
    os.utime(plugin_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert counter.cached(["hello world"]) == [2]  # the same process answers: its counts stay valid
    client.pid = 102  # restarted with the new file
    assert counter.cached(["hello world", "bye"]) == [None, None]
    assert len(counter) == 0


@pytest.mark.timeout(10)
def test_one_batch_is_one_validity_check(plugin_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient(plugin_file, pid=None)  # not running: every check stat()s the file
    counter = TokenCounter(client)
    counter.count_many([f"text {i}" for i in range(50)])
    stats = []
    real_stat = os.stat
    monkeypatch.setattr("app.tokencache.os.stat", lambda p: stats.append(p) or real_stat(p))
    assert counter.cached([f"text {i}" for i in range(50)]) == [2] * 50
    assert len(stats) == 1


@pytest.mark.timeout(30)
def test_a_counter_fits_a_conversation_as_its_count_function_does(plugin_file: Path) -> None:
    from app.history import Conversation

    client = FakeClient(plugin_file)
    counter = TokenCounter(client)
    conversation = Conversation(system="be brief")
    for i in range(300):
        conversation.add("user" if i % 3 else "assistant", f"message {i} " + "word " * (i % 7))
    expected = conversation.fit(client.count_tokens, 900, 50)
    assert conversation.fit(counter, 900, 50) == expected
    asked = len(client.asked)
    assert conversation.fit(counter, 900, 50) == expected
    assert len(client.asked) == asked < 300  # warm: nothing asked; cold: only the newest that fit, and the one past them
