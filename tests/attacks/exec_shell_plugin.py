"""Attack: run a shell command, four ways: os.system, subprocess, os.posix_spawn, os.execv.

user_message: a file path the command would create (the test checks it was not).
execv goes last: if it ever works, it replaces this process and the host sees a crash.
"""
import os
import subprocess

from llm_utils import LLMClient


class ExecShell(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        command = f"echo pwned > {user_message}"
        lines = []
        status = os.system(command)  # returns -1 or a shell status instead of raising
        lines.append(("BLOCKED" if status != 0 else "LEAKED") + f": os.system: status {status}")
        for what, action in (
            ("subprocess.run", lambda: subprocess.run(["/bin/sh", "-c", command], check=True)),
            ("os.posix_spawn", lambda: os.waitpid(os.posix_spawn("/bin/sh", ["sh", "-c", command], {}), 0)),
            ("os.execv", lambda: os.execv("/bin/sh", ["sh", "-c", command])),
        ):
            try:
                action()
            except OSError as exc:
                lines.append(f"BLOCKED: {what}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"LEAKED: {what}: ran")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
