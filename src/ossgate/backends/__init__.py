"""Backends: one protocol (`Backend` in base.py), several engines behind it.

- `native`: the ossgate engine in this process (harmony rendering and parsing happen here).
- `openai`: any OpenAI-compatible upstream (vLLM, llama.cpp server, Ollama) over HTTP.

The server sees only the protocol: a protocol-neutral `ChatTurn` in, an async stream of
`OutputEvent`s out.
"""
