"""A plugin that uses the standard library the way plugins do, one feature per line.

Runs in the untrusted profile: every line must say "ok". It is both a test that the
seccomp allow list leaves CPython working and part of the census that measured the
list (``python -m bench.census``): threads, asyncio, select/poll/epoll, ssl, mmap,
signals, time, files in scratch, sqlite3, compression and hashing, and the os calls
plugins reach for (fsync, truncate, dup2, access, which, replace, scandir, chdir, rusage).
"""
import asyncio
import concurrent.futures
import hashlib
import json
import mmap
import os
import random
import resource
import select
import selectors
import shutil
import signal
import socket
import sqlite3
import ssl
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path

from llm_utils import LLMClient


def _threads():
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(lambda n: n * n, range(100))) == 328350
    event = threading.Event()
    threading.Timer(0.01, event.set).start()
    assert event.wait(5)


async def _pair_echo():
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=left)
    peer_reader, peer_writer = await asyncio.open_connection(sock=right)
    writer.write(b"ping\n")
    await writer.drain()
    line = await peer_reader.readline()
    for w in (writer, peer_writer):
        w.close()
    await asyncio.sleep(0.001)
    return line


def _asyncio():
    assert asyncio.run(_pair_echo()) == b"ping\n"
    assert asyncio.run(asyncio.wait_for(asyncio.sleep(0, "done"), 5)) == "done"


def _select_poll_epoll():
    read, write = os.pipe()
    os.write(write, b"x")
    assert select.select([read], [], [], 1)[0] == [read]
    poller = select.poll()
    poller.register(read, select.POLLIN)
    assert poller.poll(1000)
    with selectors.DefaultSelector() as sel:
        sel.register(read, selectors.EVENT_READ)
        assert sel.select(1)
    epoll = select.epoll()
    epoll.register(read, select.EPOLLIN)
    assert epoll.poll(1)
    epoll.close()
    os.close(read)
    os.close(write)


def _ssl():
    context = ssl.create_default_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="example.com")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    assert outgoing.pending > 0  # a ClientHello was produced


def _mmap_and_files():
    with tempfile.TemporaryDirectory(dir=".") as folder:
        path = Path(folder) / "data.bin"
        path.write_bytes(b"\0" * 8192)
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as view:
            view[:5] = b"hello"
            view.flush()
        assert path.read_bytes()[:5] == b"hello"
        shutil.copyfile(path, Path(folder) / "copy.bin")
        os.rename(Path(folder) / "copy.bin", Path(folder) / "moved.bin")
        assert sorted(os.listdir(folder)) == ["data.bin", "moved.bin"]
        assert shutil.disk_usage(folder).free > 0
        with tarfile.open(Path(folder) / "a.tar.gz", "w:gz") as tar:
            tar.add(path, arcname="data.bin")
        with tarfile.open(Path(folder) / "a.tar.gz") as tar:
            tar.extractall(Path(folder) / "out", filter="data")  # its utime/chmod are refused, and ignored
        assert (Path(folder) / "out" / "data.bin").read_bytes()[:5] == b"hello"
    with mmap.mmap(-1, 1 << 20) as anonymous:
        anonymous[0] = 1


def _signals():
    # Calls run on a worker thread, where handlers cannot be set: SIGWINCH's default is
    # to be ignored, so sending it to itself exercises delivery without ending anything.
    signal.raise_signal(signal.SIGWINCH)
    signal.pthread_kill(threading.get_ident(), signal.SIGWINCH)
    os.kill(os.getpid(), signal.SIGWINCH)
    os.kill(os.getpid(), 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert signal.getsignal(signal.SIGINT) is not None


def _time():
    start = time.monotonic()
    time.sleep(0.001)
    assert time.monotonic() > start and time.time() > 0 and time.process_time() >= 0
    assert time.perf_counter_ns() > 0 and time.thread_time() >= 0


def _sqlite():
    with sqlite3.connect("workout.db") as db:
        db.execute("create table if not exists t (k integer primary key, v text)")
        db.executemany("insert or replace into t values (?, ?)", [(i, str(i)) for i in range(100)])
    with sqlite3.connect("workout.db") as db:
        assert db.execute("select count(*) from t").fetchone()[0] == 100
    os.unlink("workout.db")


def _os_calls():
    path = Path("workout.txt")
    path.write_text("0123456789")
    with open(path, "r+b") as f:
        os.fsync(f.fileno())
        os.ftruncate(f.fileno(), 5)
        os.dup2(os.dup(f.fileno()), 200, inheritable=False)
        os.close(200)
    os.truncate(path, 2)
    assert path.read_bytes() == b"01" and os.access(path, os.R_OK | os.W_OK)
    assert shutil.which("python3") or shutil.which("sh")
    os.replace(path, "moved.txt")
    assert [entry.name for entry in os.scandir(".") if entry.name == "moved.txt"] and list(os.walk("."))
    os.unlink("moved.txt")
    here = os.getcwd()
    os.chdir(here)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_utime >= 0 and os.times().user >= 0
    assert Path(".").resolve() == Path(here).resolve() and os.get_blocking(0) in (True, False)


def _data():
    blob = json.dumps({"n": list(range(1000))}).encode()
    assert zlib.decompress(zlib.compress(blob)) == blob
    assert len(hashlib.sha256(blob).hexdigest()) == 64 and len(os.urandom(16)) == 16
    assert 0 <= random.SystemRandom().random() < 1 and os.cpu_count() >= 1


FEATURES = {
    "threads": _threads, "asyncio": _asyncio, "select/poll/epoll": _select_poll_epoll, "ssl": _ssl,
    "mmap and files": _mmap_and_files, "signals": _signals, "time": _time, "sqlite3": _sqlite, "data": _data,
    "os calls": _os_calls,
}  # fmt: skip


class StdlibWorkout(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        for name, feature in FEATURES.items():
            try:
                feature()
                lines.append(f"{name}: ok")
            except Exception as exc:
                lines.append(f"{name}: FAILED {type(exc).__name__}: {exc}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
