"""ossgate: the self-hosted platform for OpenAI's open-weights gpt-oss models."""

__version__ = "0.1.0"
