"""The store contract, run against both stores: atomic replace, filters inside search, tenant isolation."""

from __future__ import annotations

import numpy as np
import pytest

from ossgate.errors import InvalidRequest, NotFound
from ossgate.rag.records import ChunkRecord, DocumentRecord

DIM = 8


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _chunks(texts, page=None):
    return [ChunkRecord(i, t, "H", page, i * 100, i * 100 + len(t), 5) for i, t in enumerate(texts)]


def _doc(source, meta=None):
    return DocumentRecord(source, source.upper(), "hash-" + source, "fp-" + source, meta or {})


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_replace_is_whole_and_delete_is_complete(store, rng):
    store.ensure_collection("acme", "kb", embedder="m", dimension=DIM)
    store.replace_document("acme", "kb", _doc("a"), _chunks(["one", "two", "three"]), rng.normal(size=(3, DIM)))
    store.replace_document("acme", "kb", _doc("a"), _chunks(["uno"]), rng.normal(size=(1, DIM)))
    info = store.collection("acme", "kb")
    assert (info.documents, info.chunks) == (1, 1)
    assert store.text_search("acme", "kb", "three", 5) == []
    assert len(store.text_search("acme", "kb", "uno", 5)) == 1
    # a failing write (wrong embedding shape) leaves the old version intact
    with pytest.raises(InvalidRequest):
        store.replace_document("acme", "kb", _doc("a"), _chunks(["x", "y"]), rng.normal(size=(1, DIM)))
    assert store.collection("acme", "kb").chunks == 1
    assert store.delete_document("acme", "kb", "a") is True
    assert store.delete_document("acme", "kb", "a") is False
    assert store.collection("acme", "kb").chunks == 0
    assert store.vector_search("acme", "kb", rng.normal(size=DIM), 5) == []


def test_embedder_mismatch_is_refused(store):
    store.ensure_collection("acme", "kb", embedder="m", dimension=DIM)
    with pytest.raises(InvalidRequest, match="embedded with m"):
        store.ensure_collection("acme", "kb", embedder="other", dimension=DIM)
    with pytest.raises(NotFound):
        store.replace_document("acme", "nope", _doc("a"), _chunks(["x"]), np.zeros((1, DIM)))


def test_filters_apply_inside_the_search(store, rng):
    """30 'eng' chunks sit nearer the query than the one 'hr' chunk; k=3 with filter dept=hr must still find it."""
    store.ensure_collection("acme", "kb", embedder="m", dimension=DIM)
    target = _unit(np.ones(DIM))
    near = np.stack([_unit(target + 0.05 * rng.normal(size=DIM)) for _ in range(30)])
    far = _unit(target + 0.8 * rng.normal(size=DIM))[None]
    store.replace_document(
        "acme", "kb", _doc("eng.txt", {"dept": "eng"}), _chunks([f"pump {i}" for i in range(30)], 1), near
    )
    store.replace_document("acme", "kb", _doc("hr.txt", {"dept": "hr", "year": 2024}), _chunks(["pump policy"], 7), far)

    hits = store.vector_search("acme", "kb", target, 3, {"dept": "hr"})
    assert len(hits) == 1
    hr_id = hits[0][0]
    assert hr_id not in [i for i, _ in store.vector_search("acme", "kb", target, 3)]
    assert [i for i, _ in store.text_search("acme", "kb", "pump", 3, {"dept": "hr"})] == [hr_id]
    # every filter kind: columns, typed metadata, any-of lists, AND across keys
    assert [i for i, _ in store.vector_search("acme", "kb", target, 3, {"page": 7})] == [hr_id]
    assert [i for i, _ in store.vector_search("acme", "kb", target, 3, {"source": "hr.txt", "year": 2024})] == [hr_id]
    assert store.vector_search("acme", "kb", target, 3, {"year": "2024"}) == []  # typed: 2024 is not "2024"
    assert store.vector_search("acme", "kb", target, 3, {"dept": "hr", "page": 1}) == []
    assert len(store.vector_search("acme", "kb", target, 50, {"dept": ["hr", "eng"]})) == 31
    assert len(store.text_search("acme", "kb", "pump", 50, {"title": "ENG.TXT"})) == 30
    with pytest.raises(InvalidRequest):
        store.vector_search("acme", "kb", target, 3, {"bad key!": 1})


def test_exact_and_approximate_agree_on_small_data(store, rng):
    store.ensure_collection("acme", "kb", embedder="m", dimension=DIM)
    vectors = np.stack([_unit(v) for v in rng.normal(size=(40, DIM))])
    store.replace_document("acme", "kb", _doc("a"), _chunks([f"c{i}" for i in range(40)]), vectors)
    q = _unit(rng.normal(size=DIM))
    exact = store.vector_search("acme", "kb", q, 10, exact=True)
    approx = store.vector_search("acme", "kb", q, 10)
    assert [i for i, _ in approx] == [i for i, _ in exact]
    scores = [s for _, s in exact]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float((vectors @ q).max()), abs=1e-4)


SECRET = "the merger code name is BLUEFIN"


def test_tenant_isolation_adversarial(store, rng):
    """Tenant 'mallory' tries every door into tenant 'acme''s collection of the same name."""
    store.ensure_collection("acme", "kb", embedder="m", dimension=DIM)
    v = _unit(rng.normal(size=DIM))
    acme_doc = store.replace_document(
        "acme", "kb", _doc("/srv/secret.txt", {"level": "top"}), _chunks([SECRET]), v[None]
    )
    store.ensure_collection("mallory", "kb", embedder="m", dimension=DIM)
    store.replace_document(
        "mallory", "kb", _doc("/home/m.txt"), _chunks(["nothing to see"]), _unit(rng.normal(size=DIM))[None]
    )
    acme_ids = list(store.get_chunks("acme", "kb", range(1, 1000)))
    assert acme_ids and acme_doc

    def seen_by_mallory(hits):
        return any(i in acme_ids for i, _ in hits)

    for query in ["BLUEFIN merger", "merger OR 1=1", '" OR "', "*", "bluefin) OR (1", "x' OR '1'='1"]:
        assert not seen_by_mallory(store.text_search("mallory", "kb", query, 50))
    assert not seen_by_mallory(store.vector_search("mallory", "kb", v, 50))
    assert not seen_by_mallory(store.vector_search("mallory", "kb", v, 50, exact=True))
    assert not seen_by_mallory(store.vector_search("mallory", "kb", v, 50, {"level": "top"}))
    assert not seen_by_mallory(store.vector_search("mallory", "kb", v, 50, {"source": "/srv/secret.txt"}))
    assert store.get_chunks("mallory", "kb", acme_ids) == {}
    assert store.get_document("mallory", "kb", "/srv/secret.txt") is None
    assert [d.source for d in store.list_documents("mallory", "kb")] == ["/home/m.txt"]
    assert [c.name for c in store.list_collections("mallory")] == ["kb"]
    assert store.list_collections("mallory")[0].chunks == 1
    # injection through names and filter keys
    for tenant in ["acme' OR '1'='1", "acme%", "acme--", "ACME", "acme "]:
        assert not seen_by_mallory(store.text_search(tenant, "kb", "BLUEFIN", 50))
        assert not seen_by_mallory(store.vector_search(tenant, "kb", v, 50))
        assert store.get_chunks(tenant, "kb", acme_ids) == {}
    with pytest.raises(InvalidRequest):
        store.vector_search("mallory", "kb", v, 5, {"level') OR 1=1 --": "x"})
    with pytest.raises(InvalidRequest):
        store.ensure_collection("acme' --", "kb", embedder="m", dimension=DIM)
    # deletes cannot reach across either
    assert store.delete_document("mallory", "kb", "/srv/secret.txt") is False
    assert store.delete_collection("mallory", "kb") is True
    assert store.collection("acme", "kb").chunks == 1
    assert [i for i, _ in store.text_search("acme", "kb", "BLUEFIN", 5)] == acme_ids
