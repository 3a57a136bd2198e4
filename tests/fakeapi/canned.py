"""Canned data shared by the shipped-plugin tests: the fake servers' reply, paths and a history."""

REPLY = "The quick brown fox jumps over the lazy dog."
MESSAGES_PATH = "/v1/messages"
COUNT_PATH = "/v1/messages/count_tokens"
CHAT_PATH = "/v1/chat/completions"
HISTORY = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "What is my name?"},
]
