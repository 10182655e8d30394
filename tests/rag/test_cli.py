"""The CLI commands, in-process through typer's runner, on the embedded store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ossgate.rag import cli

runner = CliRunner()


def test_ingest_list_search_ask_rm(write, monkeypatch, tmp_path):
    monkeypatch.setenv("OSSGATE_RAG_STORE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    write("guide.md", "# Guide\n\n## Pumps\n\nPart XK-2231 seals the pump.\n\n## Valves\n\nValves open slowly.")
    write("old.txt", "Obsolete text.")
    result = runner.invoke(cli.app, ["ingest", str(write.root), "-c", "kb", "--meta", "team=ops"])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.stdout

    result = runner.invoke(cli.app, ["docs", "list", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["name"] == "kb"
    result = runner.invoke(cli.app, ["docs", "list", "-c", "kb", "--json"])
    assert sorted(d["title"] for d in json.loads(result.stdout)) == ["Guide", "old"]

    result = runner.invoke(cli.app, ["search", "XK-2231", "-c", "kb", "--json", "--filter", "team=ops"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert "XK-2231" in hits[0]["excerpt"] and hits[0]["title"] == "Guide"

    result = runner.invoke(cli.app, ["ask", "Which part seals the pump?", "-c", "kb", "--show-prompt"])
    assert result.exit_code == 0 and "# Sources" in result.stdout and "[1] (title: Guide)" in result.stdout
    # the whole loop on the embedded gpt-oss-nano (its grounded-answer accuracy is measured by `ossgate nano eval`)
    result = runner.invoke(cli.app, ["ask", "Which part seals the pump?", "-c", "kb", "--max-tokens", "160"])
    assert result.exit_code == 0, result.output
    answer_text, _, sources = result.stdout.partition("Sources:")
    assert answer_text.strip()
    assert "[1] Guide" in sources and "guide.md" in sources

    (write.root / "old.txt").unlink()
    result = runner.invoke(cli.app, ["ingest", str(write.root), "-c", "kb", "--prune", "--meta", "team=ops"])
    assert "1 unchanged, 1 removed" in result.stdout
    result = runner.invoke(cli.app, ["docs", "rm", str(write.root / "guide.md"), "-c", "kb"])
    assert result.exit_code == 0 and "removed 1" in result.stdout
    result = runner.invoke(cli.app, ["docs", "rm", "nothing.txt", "-c", "kb"])
    assert result.exit_code == 1 and "not in 'kb'" in result.stderr


def test_errors_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("OSSGATE_RAG_STORE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    result = runner.invoke(cli.app, ["search", "x", "-c", "missing"])
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == 0 and "no collection" in result.stderr
    result = runner.invoke(cli.app, ["ingest", str(tmp_path / "nope"), "-c", "kb"])
    assert result.exit_code == 1 and "no such file" in result.stderr
    monkeypatch.setenv("OSSGATE_RAG_STORE_URL", "mysql://x")
    result = runner.invoke(cli.app, ["docs", "list"])
    assert result.exit_code == 1 and "OSSGATE_RAG" in result.stderr
