"""The SQLite chat log: every exchange is recorded, listed by `sandchat logs`, resumed by --continue."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from app import PluginManager
from app.chat import ChatSession
from app.chatlog import ChatLog
from app.render import Output
from tests.helpers import sandchat

pytestmark = pytest.mark.timeout(60)


def session_for(manager: PluginManager, plugin: str = "echo") -> ChatSession:
    return ChatSession(manager, Output(io.StringIO(), io.StringIO(), color=False), plugin, max_tokens=100, temperature=0.0)


def test_every_exchange_is_logged_with_tokens_and_errors(manager: PluginManager) -> None:
    session = session_for(manager)
    session.conversation.system = "be kind"
    session.ask("first question")
    session.switch("raises")
    session.ask("second question")
    rows = (
        sqlite3.connect(manager.paths.logs_db)
        .execute(
            "SELECT conversation, plugin, system, prompt, response, prompt_tokens, response_tokens, duration_s, error"
            " FROM exchanges ORDER BY id"
        )
        .fetchall()
    )
    assert len(rows) == 2
    (conv1, plugin1, system1, prompt1, response1, ptok, rtok, duration, error1), second = rows
    assert (plugin1, system1, prompt1, response1, error1) == ("echo", "be kind", "first question", "echo: first question", None)
    assert ptok > 0 and rtok > 0 and duration > 0
    assert second[1] == "raises" and "ValueError" in second[8] and second[0] == conv1


def test_a_failed_reply_keeps_the_conversation(manager: PluginManager) -> None:
    session = session_for(manager)
    session.ask("hello")
    session.switch("segfault")
    session.ask("crash please")
    assert [m["content"] for m in session.conversation.messages] == ["hello", "echo: hello"]
    session.switch("echo")
    session.ask("again")
    assert session.conversation.messages[-1]["content"] == "echo: again"


def test_logs_command_and_continue(manager: PluginManager, home) -> None:
    session = session_for(manager)
    session.ask("remember me")
    session.ask("and me")
    result = sandchat(home, "logs", "-n", "5", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["prompt"] for e in entries] == ["remember me", "and me"]
    resumed = session_for(manager)
    assert resumed.resume() == 2
    assert resumed.conversation.id == session.conversation.id
    assert [m["content"] for m in resumed.conversation.messages] == ["remember me", "echo: remember me", "and me", "echo: and me"]
    assert ChatLog(manager.paths.logs_db).recent(1)[0].prompt == "and me"


def test_an_older_logs_db_gains_the_counting_column_and_estimates_are_labelled(home) -> None:  # type: ignore[no-untyped-def]
    from app.chatlog import Exchange

    db = sqlite3.connect(home / "logs.db")  # the first release's table, without 'counting'
    db.execute(
        "CREATE TABLE exchanges (id INTEGER PRIMARY KEY, ts REAL NOT NULL, conversation TEXT NOT NULL, plugin TEXT NOT NULL, "
        "system TEXT NOT NULL, prompt TEXT NOT NULL, response TEXT NOT NULL, prompt_tokens INTEGER, response_tokens INTEGER, "
        "duration_s REAL, error TEXT, cancelled INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("INSERT INTO exchanges (ts, conversation, plugin, system, prompt, response, prompt_tokens, response_tokens) "
               "VALUES (1, 'c1', 'echo', '', 'old', 'echo: old', 3, 4)")  # fmt: skip
    db.commit()
    db.close()
    log = ChatLog(home / "logs.db")
    log.add(Exchange("c2", "claude", "", "new", "answer", 5, 6, 0.1, counting="estimate: tiktoken cl100k_base x 1.5"))
    assert [(e.prompt, e.estimated) for e in log.recent()] == [("old", False), ("new", True)]
    lines = sandchat(home, "logs").stdout.splitlines()
    assert " 3+4 tokens " in lines[0] and "~5+6 tokens (estimated)" in next(line for line in lines if "claude" in line)


def test_the_chat_logs_how_its_counts_were_made(manager: PluginManager) -> None:
    scratch = manager.paths.scratch / "readiness"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "mode").write_text("window")  # the test plugin then says it counts an estimate
    session = session_for(manager, "readiness")
    session.ask("how many words")
    logged = session.log.recent()[-1]
    assert logged.prompt_tokens == 3 and logged.counting == "estimate: words" and logged.estimated
