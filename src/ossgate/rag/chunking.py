"""ParsedDocument -> chunks of at most `chunk_tokens` tokens, cut along headings, paragraphs, sentences.

Counting is done with the embedder's own tokenizer (passed in as `count_tokens`): a chunk longer than
the embedder's window would be silently truncated and its tail never retrievable. A chunk never
crosses a heading or a page (so its heading and page are exact for citations) and never merges two
CSV/JSON records. Inside a section, consecutive chunks share up to `overlap` tokens of whole sentences,
so a fact split across a boundary is still whole in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby

from ossgate.rag.records import Block, ChunkRecord, ParsedDocument

_SENTENCE = re.compile(r"\S.*?(?:[.!?](?=\s)|\Z)", re.S)
_WORD = re.compile(r"\S+")


@dataclass
class _Unit:
    start: int  # offsets in the document text
    end: int
    tokens: int


def approximate_token_count(text: str) -> int:
    """A tokenizer-free estimate (words and punctuation), for when no embedder is at hand."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _units(block: Block, count_tokens: Callable[[str], int], limit: int) -> Iterator[_Unit]:
    """Sentences of a block; a sentence longer than `limit` tokens is cut into runs of words."""
    for s in _SENTENCE.finditer(block.text):
        n = count_tokens(s.group())
        if n <= limit:
            yield _Unit(block.char_start + s.start(), block.char_start + s.end(), n)
            continue
        run_start, run_end, run_tokens = None, 0, 0
        for w in _WORD.finditer(s.group()):
            wn = count_tokens(w.group())
            if run_start is not None and run_tokens + wn > limit:
                yield _Unit(
                    block.char_start + s.start() + run_start, block.char_start + s.start() + run_end, run_tokens
                )
                run_start, run_tokens = None, 0
            if run_start is None:
                run_start = w.start()
            run_end, run_tokens = w.end(), run_tokens + wn
        if run_start is not None:
            yield _Unit(block.char_start + s.start() + run_start, block.char_start + s.start() + run_end, run_tokens)


def chunk_document(
    doc: ParsedDocument, count_tokens: Callable[[str], int], *, chunk_tokens: int = 200, overlap: int = 40
) -> list[ChunkRecord]:
    """Cut a parsed document into chunks; offsets refer to `doc.text`."""
    chunks: list[ChunkRecord] = []

    def emit(units: list[_Unit], block: Block) -> None:
        start, end = units[0].start, units[-1].end
        chunks.append(
            ChunkRecord(
                ordinal=len(chunks),
                text=doc.text[start:end],
                heading=" > ".join(block.headings),
                page=block.page,
                char_start=start,
                char_end=end,
                n_tokens=sum(u.tokens for u in units),
            )
        )

    # a section: consecutive blocks under the same headings on the same page; each record alone
    def section_key(item: tuple[int, Block]) -> tuple:
        i, b = item
        return (b.headings, b.page, i if b.record else -1)

    for _, section in groupby(enumerate(doc.blocks), key=section_key):
        blocks = [b for _, b in section]
        current: list[_Unit] = []
        fresh = 0  # units in `current` not carried over from the previous chunk
        for block in blocks:
            for unit in _units(block, count_tokens, chunk_tokens):
                if current and sum(u.tokens for u in current) + unit.tokens > chunk_tokens:
                    if fresh:
                        emit(current, blocks[0])
                    carried: list[_Unit] = []
                    for u in reversed(current):
                        if sum(c.tokens for c in carried) + u.tokens > overlap:
                            break
                        carried.insert(0, u)
                    while carried and sum(c.tokens for c in carried) + unit.tokens > chunk_tokens:
                        carried.pop(0)
                    current, fresh = carried, 0
                current.append(unit)
                fresh += 1
        if current and fresh:
            emit(current, blocks[0])
    return chunks
