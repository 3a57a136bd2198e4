"""The constants both sides of the process boundary agree on: host runner and plugin child.

One home for every value the host and the child must share, so no two copies drift apart.
It imports nothing: the child's entry point (``runner/child/entry.py``) reads it with the
standard library alone, before its sandbox is on, and so may any module on either side.
"""

#: Bumped when a message changes shape; the child's hello carries it, the host checks it.
PROTOCOL_VERSION = 2

#: The first element of every message: what kind of message it is.
REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2

#: Requests a child must answer.
METHODS = ("generate", "chat", "stream", "count_tokens", "ping", "cancel", "shutdown")

#: ``LLMClient`` methods a plugin may override; its hello lists the ones it did.
OPTIONAL_METHODS = ("stream_response", "generate_chat", "stream_chat")

#: The ``kind`` of an error map says whose fault it was.
ERROR_KINDS = ("plugin", "contract", "cancelled", "request", "load", "sandbox", "busy")

#: Largest message either side accepts, in bytes (a hostile peer cannot make us buffer more).
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024

#: The sandbox profiles, strictest first.
PROFILES = ("untrusted", "network", "none")

#: A child that could not apply its sandbox exits with this status (sysexits.h EX_CONFIG),
#: before any plugin code has run, after one stderr line that starts with the marker.
SANDBOX_EXIT = 78
SANDBOX_ERROR_MARKER = "sandchat-sandbox-error:"

#: The child's first frame, the sandbox report: a 4-byte length, then lines under this one.
REPORT_MAGIC = "sandchat-sandbox-report 1"
REPORT_LENGTH_BYTES = 4

#: The host's first frame, the plugin's code: an 8-byte length, then at most this many bytes.
MAX_SOURCE = 16 * 1024 * 1024
SOURCE_LENGTH_BYTES = 8

#: What a plugin prints through ``sys.stdout`` reaches its log with each line tagged so.
STDOUT_TAG = "[stdout] "

#: A plugin log line starts so: the local time in LOG_TIME_FORMAT, then who speaks (the
#: plugin's name for its own stderr, LOG_HOST for what sandchat says about it).
LOG_PREFIX = "{stamp} [{who}] "
LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
LOG_HOST = "sandchat"

#: Bytes per read of a pipe: a pipe holds 64 KiB by default, so no read returns more.
READ_SIZE = 64 * 1024

#: Before sleeping in poll() for the other side, a reader polls without sleeping for this
#: long (yielding the CPU between polls). When the peer runs on another CPU, sleeping costs
#: a cross-CPU wake-up per message (about 90 us on a VM whose idle CPUs halt at once); a
#: message that arrives within the window costs none. Only when the process may use more
#: than one CPU: on one CPU the peer cannot run while we poll, so there we sleep at once.
SPIN_SECONDS = 100e-6
