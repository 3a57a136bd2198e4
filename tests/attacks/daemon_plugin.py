"""Attack: double-fork a daemon (fork, setsid, fork) that would outlive the plugin's stop.

The daemon, if it is ever born, sleeps for two minutes with the same command line as the
plugin, so the test's process scan finds it.
"""
import os
import time

from llm_utils import LLMClient


class Daemon(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        try:
            read_end, write_end = os.pipe()
            pid = os.fork()
        except OSError as exc:
            return f"BLOCKED: fork: {type(exc).__name__} {exc.errno} {exc.strerror}"
        if pid == 0:  # first child: leave the session, fork the daemon, report its pid, exit
            try:
                os.setsid()
            except OSError:
                pass  # keep going: a daemon in the old session is still a daemon
            daemon = os.fork()
            if daemon == 0:
                time.sleep(120)
                os._exit(0)
            os.write(write_end, str(daemon).encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        daemon = os.read(read_end, 32).decode()
        return f"LEAKED: daemon pid {daemon} is running"

    def count_tokens(self, text):
        return len(text.split())
