"""Attack: grow a bytearray towards 8 GiB (doubling, every page touched) until memory runs out."""
from llm_utils import LLMClient

MiB = 2**20


class MemoryBomb(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        size, reached = 64 * MiB, 0
        try:
            while size <= 8192 * MiB:
                buf = bytearray(size)  # zero-filled: the pages are really touched
                reached = len(buf)
                del buf
                size *= 2
        except MemoryError:
            return f"BLOCKED: MemoryError allocating {size // MiB} MiB (largest that worked: {reached // MiB} MiB)"
        return f"LEAKED: allocated {reached // MiB} MiB"

    def count_tokens(self, text):
        return len(text.split())
