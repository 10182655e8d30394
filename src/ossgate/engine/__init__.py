"""The native gpt-oss engine: requests, KV cache, continuous-batching scheduler, sampling, async front."""
