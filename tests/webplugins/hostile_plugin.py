# /// plugin
# description = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=1\"> [x](javascript:window.__pwned=1)"
# ///
"""Replies with everything a page could be tricked into running; a page that is safe runs none of it."""
import time

from llm_utils import LLMClient

PAYLOAD = """<script>window.__pwned=1</script>

<img src=x onerror="window.__pwned=1">

[click me](javascript:window.__pwned=1) and [again](JaVaScRiPt:window.__pwned=1)
and [entity](&#106;avascript:window.__pwned=1) and <javascript:window.__pwned=1>

[ref link][r]

[r]: javascript:window.__pwned=1

<div onmouseover="window.__pwned=1">raw html block</div>

<a href="javascript:window.__pwned=1">raw anchor</a>

<svg onload="window.__pwned=1"></svg>

<iframe src="javascript:window.__pwned=1"></iframe>

```x" onmouseover="window.__pwned=1
fenced
```

[safe](https://example.com/) stays a link.
"""


class Hostile(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return PAYLOAD

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        half = len(PAYLOAD) // 2
        yield PAYLOAD[:half]  # split mid-tag: the streaming text must not become markup either
        time.sleep(0.1)
        yield PAYLOAD[half:]

    def check(self):
        return "<img src=x onerror=window.__pwned=1> not ready <script>window.__pwned=1</script>"

    def count_tokens(self, text):
        return len(text.split())
