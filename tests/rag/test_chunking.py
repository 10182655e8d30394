"""Chunks respect the token budget, headings and pages, overlap by whole sentences, and point into the text."""

from __future__ import annotations

from ossgate.rag.chunking import approximate_token_count, chunk_document
from ossgate.rag.parsers import _finish
from ossgate.rag.records import Block


def _doc(blocks):
    return _finish("T", blocks)


def test_budget_offsets_and_overlap(embedder):
    sentences = [f"Sentence number {i} talks about pump maintenance interval {i * 7} hours." for i in range(60)]
    doc = _doc([Block(" ".join(sentences[:30]), ("Maintenance",)), Block(" ".join(sentences[30:]), ("Maintenance",))])
    chunks = chunk_document(doc, embedder.count_tokens, chunk_tokens=64, overlap=20)
    assert len(chunks) > 5
    for c in chunks:
        assert embedder.count_tokens(c.text) <= 64 + 2  # joins may add a token or two of whitespace-free glue
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.heading == "Maintenance"
    # consecutive chunks share a sentence (overlap), and together they cover every sentence
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.char_start < a.char_end
    covered = " ".join(c.text for c in chunks)
    assert all(s in covered for s in sentences)


def test_never_crosses_headings_pages_or_records():
    doc = _doc(
        [
            Block("Alpha one. Alpha two.", ("A",), page=1),
            Block("Beta one.", ("A",), page=2),
            Block("Gamma one.", ("B",), page=2),
            Block("k: 1", ("row 1",), record=True),
            Block("k: 2", ("row 1",), record=True),
        ]
    )
    chunks = chunk_document(doc, approximate_token_count, chunk_tokens=100, overlap=10)
    assert [(c.text, c.heading, c.page) for c in chunks] == [
        ("Alpha one. Alpha two.", "A", 1),
        ("Beta one.", "A", 2),
        ("Gamma one.", "B", 2),
        ("k: 1", "row 1", None),
        ("k: 2", "row 1", None),
    ]


def test_overlong_sentence_is_cut_into_word_runs():
    words = " ".join(f"w{i}" for i in range(500))
    doc = _doc([Block(words)])
    chunks = chunk_document(doc, approximate_token_count, chunk_tokens=50, overlap=0)
    assert all(approximate_token_count(c.text) <= 50 for c in chunks)
    assert " ".join(c.text for c in chunks) == words
