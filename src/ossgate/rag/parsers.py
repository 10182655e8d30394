"""Files -> ParsedDocument: title, heading path and page of every paragraph, in reading order.

One function per format, chosen by suffix. Each keeps what citations need: the document title, the
headings above a passage and, for PDFs, the page. CSV rows and JSON records become one block each
(a record is the natural unit to retrieve). Parsers never guess at layout they cannot see: a PDF's
headings are not recovered (its text has none marked), a DOCX has no pages.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from ossgate.errors import InvalidRequest
from ossgate.rag.records import Block, ParsedDocument

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _finish(title: str, blocks: list[Block]) -> ParsedDocument:
    """Join the blocks into the document text (blank line between blocks) and record each offset."""
    parts, offset, kept = [], 0, []
    for b in blocks:
        text = b.text.strip()
        if not text:
            continue
        b.text, b.char_start = text, offset
        parts.append(text)
        kept.append(b)
        offset += len(text) + 2
    return ParsedDocument(title=title.strip(), blocks=kept, text="\n\n".join(parts))


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def parse_text(path: Path) -> ParsedDocument:
    text = path.read_text(encoding="utf-8", errors="replace")
    return _finish(path.stem, [Block(p) for p in _paragraphs(text)])


def parse_markdown(path: Path) -> ParsedDocument:
    """ATX headings (`#`..`######`) set the heading path; the first level-1 heading is the title."""
    title, headings, blocks, para = "", [], [], []
    in_fence = False

    def flush() -> None:
        if para:
            blocks.extend(Block(p, tuple(h for _, h in headings)) for p in _paragraphs("\n".join(para)))
            para.clear()

    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _MD_HEADING.match(line)
        if m:
            flush()
            level, heading = len(m.group(1)), m.group(2)
            if level == 1 and not title:
                title = heading
            headings = [(lv, h) for lv, h in headings if lv < level] + [(level, heading)]
        else:
            para.append(line)
    flush()
    return _finish(title or path.stem, blocks)


class _HTMLBlocks(HTMLParser):
    """Collects <title>, headings h1-h6 and the text of block elements; skips script/style/nav chrome."""

    _BLOCK = {"p", "div", "li", "td", "th", "pre", "blockquote", "section", "article", "br", "tr", "dd", "dt"}
    _SKIP = {"script", "style", "noscript", "template", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.blocks: list[Block] = []
        self._headings: list[tuple[int, str]] = []
        self._buf: list[str] = []
        self._skip = 0
        self._in_title = False
        self._heading_level = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._buf).split())
        self._buf.clear()
        if not text:
            return
        if self._heading_level:
            level = self._heading_level
            self._headings = [(lv, h) for lv, h in self._headings if lv < level] + [(level, text)]
            if level == 1 and not self.title:
                self.title = text
        else:
            self.blocks.append(Block(text, tuple(h for _, h in self._headings)))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading_level = int(tag[1])
        elif tag in self._BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading_level = 0
        elif tag in self._BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        else:
            self._buf.append(data)


def parse_html(path: Path) -> ParsedDocument:
    parser = _HTMLBlocks()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    parser._flush()
    return _finish(" ".join(parser.title.split()) or path.stem, parser.blocks)


def parse_pdf(path: Path) -> ParsedDocument:
    """Text per page via pypdf; the title from the PDF's metadata, else the file name."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        title = (reader.metadata.title if reader.metadata else None) or path.stem
        blocks = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            # pypdf ends each visual line with \n; a paragraph break shows as an empty line, else
            # treat the page's lines as one flowing paragraph per run of lines
            blocks.extend(Block(" ".join(p.split()), page=number) for p in _paragraphs(text))
    except (PdfReadError, ValueError, KeyError) as e:
        raise InvalidRequest(f"{path}: not a readable PDF ({e})") from e
    return _finish(str(title), blocks)


def parse_docx(path: Path) -> ParsedDocument:
    """Paragraphs with their 'Heading N' styles; the title from core properties or a 'Title' paragraph."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError) as e:
        raise InvalidRequest(f"{path}: not a readable .docx file ({e})") from e
    title = document.core_properties.title or ""
    headings: list[tuple[int, str]] = []
    blocks = []
    for p in document.paragraphs:
        text, style = p.text.strip(), (p.style.name if p.style is not None else "") or ""
        if not text:
            continue
        if style == "Title":
            title = title or text
        elif m := re.fullmatch(r"Heading (\d)", style):
            level = int(m.group(1))
            headings = [(lv, h) for lv, h in headings if lv < level] + [(level, text)]
        else:
            blocks.append(Block(text, tuple(h for _, h in headings)))
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            if any(cells):
                blocks.append(Block(" | ".join(cells), tuple(h for _, h in headings)))
    return _finish(title or path.stem, blocks)


def _record_text(record: dict) -> str:
    return "\n".join(
        f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in record.items()
    )


def parse_csv(path: Path) -> ParsedDocument:
    """One block per row, written as `column: value` lines so each field name travels with its value."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.DictReader(io.StringIO(text), dialect=dialect)
    blocks = [
        Block(_record_text({k: v for k, v in row.items() if k is not None}), (f"row {i}",), record=True)
        for i, row in enumerate(rows, start=1)
    ]
    return _finish(path.stem, blocks)


def parse_json(path: Path) -> ParsedDocument:
    """A list of objects, an object holding one such list, a single object, or JSON Lines (.jsonl)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".jsonl":
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        data = [data]
    blocks = [
        Block(
            _record_text(r) if isinstance(r, dict) else json.dumps(r, ensure_ascii=False), (f"record {i}",), record=True
        )
        for i, r in enumerate(data, start=1)
    ]
    return _finish(path.stem, blocks)


PARSERS: dict[str, Callable[[Path], ParsedDocument]] = {
    ".txt": parse_text,
    ".text": parse_text,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".csv": parse_csv,
    ".json": parse_json,
    ".jsonl": parse_json,
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in PARSERS


def parse(path: Path) -> ParsedDocument:
    """Parse one file by its suffix. Raises InvalidRequest for an unsupported or unreadable file."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise InvalidRequest(f"{path}: unsupported file type {path.suffix!r}; supported: {', '.join(sorted(PARSERS))}")
    return parser(path)
