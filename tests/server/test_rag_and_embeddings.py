"""The retrieval stage and /v1/embeddings, with ossgate.rag's real embedder and store."""

from __future__ import annotations

import openai
import pytest
from server_procs import ServerProcess, tiny_model

pytest.importorskip("ossgate.rag.retrieve")
pytest.importorskip("sentence_transformers")

HANDBOOK = "Vacation policy. Every employee has 27 vacation days per year. Unused days expire in March.\n"


@pytest.fixture(scope="module")
def rag_server(tmp_path_factory, ossgate_home, tiny_checkpoint):
    from ossgate.rag import Ingestor, open_store, shared_embedder

    work = tmp_path_factory.mktemp("rag")
    (work / "docs").mkdir()
    (work / "docs" / "handbook.md").write_text(HANDBOOK)
    store_url = f"sqlite:///{work / 'rag.db'}"
    Ingestor(open_store(store_url), shared_embedder()).ingest("default", "handbook", [work / "docs"])
    server = ServerProcess(work, [tiny_model(tiny_checkpoint)], ossgate_home, rag={"store_url": store_url})
    server.start()
    yield server
    server.stop()


def test_chat_rag_extension_adds_sources_and_citations(rag_server):
    client = openai.OpenAI(base_url=rag_server.url, api_key="x", max_retries=0, timeout=120)
    question = [{"role": "user", "content": "How many vacation days do I get?"}]
    plain = client.chat.completions.create(model="tiny", messages=question, max_tokens=1, temperature=0)
    grounded = client.chat.completions.create(
        model="tiny",
        messages=question,
        max_tokens=1,
        temperature=0,
        extra_body={"rag": {"collection": "handbook", "top_k": 3}},
    )
    citations = grounded.model_extra["citations"]
    assert citations and "27 vacation days" in citations[0]["excerpt"]
    assert grounded.usage.prompt_tokens > plain.usage.prompt_tokens + 15  # the sources block is in the prompt
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="tiny", messages=question, max_tokens=1, extra_body={"rag": {"collection": "nope"}}
        )


def test_responses_file_search_tool(rag_server):
    client = openai.OpenAI(base_url=rag_server.url, api_key="x", max_retries=0, timeout=120)
    r = client.responses.create(
        model="tiny",
        input="How many vacation days do I get?",
        max_output_tokens=1,
        tools=[{"type": "file_search", "vector_store_ids": ["handbook"]}],
    )
    assert "27 vacation days" in r.model_extra["citations"][0]["excerpt"]


def test_embeddings(rag_server):
    client = openai.OpenAI(base_url=rag_server.url, api_key="x", max_retries=0, timeout=120)
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=["vacation days", "holidays off work", "GPU kernels"])
    a, b, c = (d.embedding for d in r.data)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert len(a) == 384 and dot(a, b) > dot(a, c)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
