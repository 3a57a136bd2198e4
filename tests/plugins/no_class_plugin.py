"""Defines no LLMClient subclass at all."""


class NotAClient:
    def generate_response(self, system, user_message):
        return "no"
