import hashlib

import pytest

from ossgate.errors import VocabularyError
from ossgate.vocab import O200K_FILENAME, O200K_SHA256, provision_vocabulary


def test_provisioned_vocabulary_has_the_published_hash(tmp_path):
    directory = provision_vocabulary(tmp_path)
    assert hashlib.sha256((directory / O200K_FILENAME).read_bytes()).hexdigest() == O200K_SHA256
    assert provision_vocabulary(tmp_path) == directory  # second call verifies and reuses


def test_wrong_hash_is_rejected_not_replaced(tmp_path):
    bad = tmp_path / O200K_FILENAME
    bad.write_bytes(b"aGVsbG8= 0\n")
    with pytest.raises(VocabularyError, match="expected 446a9538"):
        provision_vocabulary(tmp_path)
    assert bad.read_bytes() == b"aGVsbG8= 0\n"


def test_harmony_works_offline_from_the_provisioned_file(monkeypatch):
    # no network here at all; the encoding must come from the data dir
    from ossgate import harmony

    ids = harmony.text_tokens("Hello world")
    assert ids == [13225, 2375] and harmony.decode(ids) == "Hello world"
