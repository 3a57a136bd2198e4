"""Attack: exhaust the machine from inside the plugin's own limits.

user_message: "threads" starts threads until the kernel refuses one (8,000 went through
before a cap existed, pid exhaustion shown in a small pid namespace); "shared MIB" holds
MIB of shared anonymous memory, pages touched, which RLIMIT_AS counts once but a plain
RSS reading hides (memfd_create + fallocate held 5.3 GiB before memfd was refused).
One line: BLOCKED (with how far it got) or LEAKED.
"""
import mmap
import threading

from llm_utils import LLMClient

MiB = 2**20
HELD = []  # kept between calls: the memory stays charged while the plugin lives


def _threads():
    stop, started = threading.Event(), []
    try:
        while len(started) < 8000:
            thread = threading.Thread(target=stop.wait, daemon=True)
            thread.start()
            started.append(thread)
    except RuntimeError as exc:
        return f"BLOCKED: thread {len(started) + 1} refused: {exc}"
    finally:
        stop.set()
        for thread in started:
            thread.join()
    return f"LEAKED: started {len(started)} threads"


def _shared(mib):
    areas = HELD
    try:
        for _ in range(mib):
            area = mmap.mmap(-1, MiB, flags=mmap.MAP_SHARED)
            area.write(b"x" * MiB)
            areas.append(area)
    except OSError as exc:
        return f"BLOCKED: mapping MiB {len(areas) + 1} failed: {exc}"
    return f"LEAKED: holding {len(areas)} MiB of shared memory"


class Exhaust(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        what, _, amount = user_message.partition(" ")
        return _threads() if what == "threads" else _shared(int(amount))

    def count_tokens(self, text):
        return len(text.split())
