"""Each supported format parses into title, heading path, page numbers and consistent offsets."""

from __future__ import annotations

import json

import pytest

from ossgate.errors import InvalidRequest
from ossgate.rag.parsers import parse


def _offsets_consistent(doc) -> None:
    for b in doc.blocks:
        assert doc.text[b.char_start : b.char_start + len(b.text)] == b.text


def test_text(write):
    doc = parse(write("notes.txt", "First paragraph\nstill first.\n\n\nSecond paragraph."))
    assert doc.title == "notes"
    assert [b.text for b in doc.blocks] == ["First paragraph\nstill first.", "Second paragraph."]
    _offsets_consistent(doc)


def test_markdown_headings(write):
    md = (
        "# Handbook\n\nIntro text.\n\n## Leave\n\nTwenty days.\n\n### Sick leave\n\nTen days.\n\n"
        "## Travel\n\n```\n# not a heading\n```\n"
    )
    doc = parse(write("h.md", md))
    assert doc.title == "Handbook"
    by_text = {b.text: b.headings for b in doc.blocks}
    assert by_text["Intro text."] == ("Handbook",)
    assert by_text["Twenty days."] == ("Handbook", "Leave")
    assert by_text["Ten days."] == ("Handbook", "Leave", "Sick leave")
    assert by_text["```\n# not a heading\n```"] == ("Handbook", "Travel")
    _offsets_consistent(doc)


def test_html(write):
    html = (
        "<html><head><title>Ops Guide</title><style>p{}</style></head><body><nav></nav>"
        "<h1>Ops</h1><p>Restart the <b>pump</b> weekly.</p>"
        "<h2>Alarms</h2><ul><li>Red: stop</li><li>Amber: check</li></ul>"
        "<script>ignore()</script></body></html>"
    )
    doc = parse(write("g.html", html))
    assert doc.title == "Ops Guide"
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("Restart the pump weekly.", ("Ops",)),
        ("Red: stop", ("Ops", "Alarms")),
        ("Amber: check", ("Ops", "Alarms")),
    ]
    _offsets_consistent(doc)


def test_pdf_pages(tmp_path, make_pdf):
    path = tmp_path / "manual.pdf"
    make_pdf(path, ["Installation: bolt the unit down.", "Warranty: 36 months from delivery.", "Disposal: recycle."])
    doc = parse(path)
    assert doc.title == "Compressor Manual"
    assert [(b.page, b.text) for b in doc.blocks] == [
        (1, "Installation: bolt the unit down."),
        (2, "Warranty: 36 months from delivery."),
        (3, "Disposal: recycle."),
    ]
    _offsets_consistent(doc)


def test_docx_headings(tmp_path, make_docx):
    path = tmp_path / "policy.docx"
    make_docx(path)
    doc = parse(path)
    assert doc.title == "Security Policy"
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("Badges are personal.", ("Access",)),
        ("Visitors sign in at reception.", ("Access", "Visitors")),
        ("Zone B | escort required", ("Access", "Visitors")),
    ]
    _offsets_consistent(doc)


def test_csv_records(write):
    doc = parse(write("parts.csv", 'part,name,price\nXK-1,seal,3.50\nXK-2,"valve, brass",12\n'))
    assert [b.text for b in doc.blocks] == [
        "part: XK-1\nname: seal\nprice: 3.50",
        "part: XK-2\nname: valve, brass\nprice: 12",
    ]
    assert all(b.record for b in doc.blocks) and doc.blocks[1].headings == ("row 2",)
    _offsets_consistent(doc)


@pytest.mark.parametrize("name", ["items.json", "items.jsonl", "wrapped.json"])
def test_json_records(write, name):
    records = [{"id": 1, "q": "reset?", "tags": ["a"]}, {"id": 2, "q": "refund?"}]
    if name.endswith(".jsonl"):
        text = "\n".join(json.dumps(r) for r in records)
    elif name.startswith("wrapped"):
        text = json.dumps({"version": 3, "items": records})
    else:
        text = json.dumps(records)
    doc = parse(write(name, text))
    assert [b.text for b in doc.blocks] == ['id: 1\nq: reset?\ntags: ["a"]', "id: 2\nq: refund?"]
    _offsets_consistent(doc)


def test_bad_files_raise_invalid_request(write, tmp_path):
    with pytest.raises(InvalidRequest, match="invalid JSON"):
        parse(write("bad.json", "{not json"))
    with pytest.raises(InvalidRequest, match="unsupported"):
        parse(write("x.exe", "MZ"))
    (tmp_path / "fake.pdf").write_bytes(b"not a pdf")
    with pytest.raises(InvalidRequest, match="PDF"):
        parse(tmp_path / "fake.pdf")
