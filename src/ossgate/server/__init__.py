"""The OpenAI-compatible HTTP service (`ossgate serve`): FastAPI app, routes, request pipeline, access control."""
