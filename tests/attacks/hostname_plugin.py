"""Attack (root): change machine-wide settings: the host name and the NIS domain name.

It sets both to their current values, so even a success changes nothing on the machine.
"""
import ctypes
import os

from llm_utils import LLMClient


class Hostname(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        libc = ctypes.CDLL(None, use_errno=True)
        lines = []
        for what, read, write in (("hostname", libc.gethostname, libc.sethostname),
                                  ("domainname", libc.getdomainname, libc.setdomainname)):
            buf = ctypes.create_string_buffer(256)
            read(buf, 256)  # a read: always allowed
            if write(buf.value, len(buf.value)) == 0:
                lines.append(f"LEAKED: set{what} {buf.value!r}: done")
            else:
                err = ctypes.get_errno()
                lines.append(f"BLOCKED: set{what}: errno {err} {os.strerror(err)}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
