"""Incremental ingest, prune, sidecar metadata and crash safety, against both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ossgate.rag.ingest import Ingestor
from ossgate.rag.store import open_store


def _ingest(store, embedder, root, **kw):
    return Ingestor(store, embedder, chunk_tokens=64, chunk_overlap=8).ingest("acme", "kb", [root], **kw)


def test_reingest_touches_only_changed_files(store, embedder, write):
    a = write("a.txt", "Alpha facts. The pump runs at 40 bar.")
    write("sub/b.md", "# B\n\nBeta facts about valves.")
    write("c.html", "<h1>C</h1><p>Gamma facts about gaskets.</p>")
    first = _ingest(store, embedder, write.root)
    assert len(first.added) == 3 and first.chunks == 3 and not first.failed
    before = {d.source: d for d in store.list_documents("acme", "kb")}

    again = _ingest(store, embedder, write.root)
    assert (again.added, again.updated, len(again.unchanged), again.chunks) == ([], [], 3, 0)

    time.sleep(0.01)
    a.write_text("Alpha facts, revised. The pump now runs at 55 bar.")
    third = _ingest(store, embedder, write.root)
    assert third.updated == [str(a.resolve())] and len(third.unchanged) == 2
    after = {d.source: d for d in store.list_documents("acme", "kb")}
    for source, doc in after.items():
        changed = source == str(a.resolve())
        assert (doc.ingested_at != before[source].ingested_at) == changed
        assert (doc.content_hash != before[source].content_hash) == changed
    assert store.text_search("acme", "kb", "55 bar", 5) and not store.text_search("acme", "kb", "40", 5)


def test_prune_removes_only_vanished_files_under_the_given_paths(store, embedder, write, tmp_path):
    keep = write("keep.txt", "Kept.")
    gone = write("gone.txt", "Soon gone.")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x.txt").write_text("From another root.")
    _ingest(store, embedder, write.root)
    Ingestor(store, embedder).ingest("acme", "kb", [other])
    gone.unlink()
    no_prune = _ingest(store, embedder, write.root)
    assert no_prune.removed == [] and store.get_document("acme", "kb", str(gone.resolve()))
    pruned = _ingest(store, embedder, write.root, prune=True)
    assert pruned.removed == [str(gone.resolve())]
    assert sorted(d.source for d in store.list_documents("acme", "kb")) == sorted(
        [str(keep.resolve()), str((other / "x.txt").resolve())]
    )


def test_exclude_sidecar_and_flag_metadata(store, embedder, write):
    write("report.txt", "Quarterly numbers.")
    write("report.txt.meta.json", json.dumps({"dept": "finance", "year": 2024}))
    write("drafts/wip.txt", "Not ready.")
    write("debug.log.txt", "noise")
    report = _ingest(
        store, embedder, write.root, exclude=["drafts/*", "*.log.txt"], metadata={"dept": "all", "src": "nas"}
    )
    docs = store.list_documents("acme", "kb")
    assert [os.path.basename(d.source) for d in docs] == ["report.txt"] and len(report.added) == 1
    assert docs[0].metadata == {"dept": "finance", "year": 2024, "src": "nas"}  # sidecar wins
    # changing only the sidecar re-ingests the document
    write("report.txt.meta.json", json.dumps({"dept": "finance", "year": 2025}))
    assert len(_ingest(store, embedder, write.root, exclude=["drafts/*", "*.log.txt"]).updated) == 1


def test_a_broken_file_is_reported_and_keeps_its_old_version(store, embedder, write):
    bad = write("data.json", json.dumps([{"q": "What is XK-9?", "a": "A bolt."}]))
    _ingest(store, embedder, write.root)
    bad.write_text("{broken")
    report = _ingest(store, embedder, write.root)
    assert [s for s, _ in report.failed] == [str(bad.resolve())] and "invalid JSON" in report.failed[0][1]
    assert store.text_search("acme", "kb", "XK-9", 5)


def test_killed_mid_ingest_leaves_no_partial_documents(store_url, embedder, write, integrity):
    """SIGKILL the CLI while it ingests, check the store, re-run, check again: no duplicates, no orphans."""
    paragraph = "Maintenance note {i}.{j}: inspect the seal, log the pressure and replace worn gaskets. " * 6
    for i in range(40):
        write(f"note{i:02}.md", "\n\n".join(f"## Section {j}\n\n" + paragraph.format(i=i, j=j) for j in range(2)))
    env = {
        **os.environ,
        "OSSGATE_RAG_STORE_URL": store_url,
        "OSSGATE_RAG_CHUNK_TOKENS": "48",
        "OSSGATE_RAG_CHUNK_OVERLAP": "8",
    }
    cmd = [sys.executable, "-m", "ossgate.rag.cli", "ingest", str(write.root), "--collection", "kb"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            with open_store(store_url) as s:
                info = s.collection("default", "kb")
                if info and info.documents >= 3:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest finished before it could be killed; give it more files"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    with open_store(store_url) as s:
        state = integrity(s)
        partial = s.collection("default", "kb")
        assert state["mismatched"] == state["orphans"] == state["duplicates"] == 0 and state["chunks"] == state["fts"]
        assert 3 <= partial.documents < 40
    # the re-run in-process (same settings as the CLI's, so the same fingerprints): it must finish the job
    with open_store(store_url) as s:
        done = Ingestor(s, embedder, chunk_tokens=48, chunk_overlap=8).ingest("default", "kb", [write.root])
    assert (len(done.added), len(done.unchanged), done.failed) == (40 - partial.documents, partial.documents, [])
    with open_store(store_url) as s:
        state = integrity(s)
        info = s.collection("default", "kb")
        assert state["mismatched"] == state["orphans"] == state["duplicates"] == 0 and state["chunks"] == state["fts"]
        assert info.documents == 40 and info.chunks == state["chunks"] == sum(
            d.n_chunks for d in s.list_documents("default", "kb")
        )
