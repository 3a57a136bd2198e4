"""A syntax error on line 5."""
from llm_utils import LLMClient


class BadSyntax(LLMClient)
    pass
