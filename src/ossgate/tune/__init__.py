"""Training gpt-oss models with the project's own code: full-parameter now, LoRA later on the same trainer."""
