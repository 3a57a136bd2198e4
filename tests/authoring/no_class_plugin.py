"""Defines no LLMClient subclass."""


class Client:
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"
