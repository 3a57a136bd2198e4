"""Does not even compile."""
from llm_utils import LLMClient

class Broken(LLMClient)
    pass
