"""Answers that test the app's honesty: the user message says which.

``empty``    an empty answer        ``blank``    only white space
``partial``  streams "part one" then raises (a reply cut off mid-way)
``refused``  raises a PermissionError that claims a refusal (no host record: no hint may follow)
anything else is echoed as ``honest: <message>``.
"""

from llm_utils import LLMClient


class Honest(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        if user_message == "empty":
            return
        if user_message == "blank":
            yield "  \n"
            return
        if user_message == "partial":
            yield "part "
            yield "one"
            raise ConnectionError("the reply was cut off: the stream ended before its end marker")
        if user_message == "refused":
            raise PermissionError("the sandbox refused a connection to 127.0.0.1:8088")
        yield f"honest: {user_message}"

    def count_tokens(self, text):
        return len(text.split())
