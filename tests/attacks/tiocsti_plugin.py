"""Attack: push keystrokes into a terminal with the TIOCSTI ioctl on fds 0, 1 and 2.

The sandbox must refuse the ioctl itself (EPERM), not merely because the fd is no tty.
"""
import fcntl
import termios

from llm_utils import LLMClient


class Tiocsti(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        for fd in (0, 1, 2):
            try:
                fcntl.ioctl(fd, termios.TIOCSTI, b"x")
            except OSError as exc:
                lines.append(f"BLOCKED: TIOCSTI on fd {fd}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"LEAKED: TIOCSTI on fd {fd}: typed")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
