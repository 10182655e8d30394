"""Settings: ossgate.toml and OSSGATE_* env, refused at start-up with a message that names the field."""

from __future__ import annotations

import pytest

from ossgate.errors import InvalidRequest
from ossgate.settings import NANO_MODEL_NAME, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OSSGATE_HOME", str(tmp_path))
    monkeypatch.delenv("OSSGATE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_serve_nano_on_loopback(tmp_path):
    s = Settings.load()
    assert (s.host, s.port, s.loopback) == ("127.0.0.1", 8000, True)
    assert [m.name for m in s.resolved_models()] == [NANO_MODEL_NAME]
    assert s.database_url == f"sqlite:///{tmp_path / 'ossgate.db'}"


def test_toml_with_server_table_and_models(tmp_path):
    path = tmp_path / "ossgate.toml"
    path.write_text(
        '[server]\nhost = "0.0.0.0"\nqueue_size = 3\n'
        '[[models]]\nname = "a"\npath = "/m/a"\n'
        '[[models]]\nname = "b"\nbackend = "openai"\nupstream = "http://10.0.0.5:8000/v1"\n'
    )
    s = Settings.load()  # ./ossgate.toml is found without --config
    assert s.host == "0.0.0.0" and not s.loopback and s.queue_size == 3
    assert [(m.name, m.backend) for m in s.resolved_models()] == [("a", "native"), ("b", "openai")]


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("OSSGATE_PORT", "9001")
    monkeypatch.setenv("OSSGATE_QUEUE_SIZE", "5")
    s = Settings.load()
    assert (s.port, s.queue_size) == (9001, 5)


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("port = 70000", "port"),
        ('database_url = "mysql://x"', "database_url"),
        ('[[models]]\nname = "x"\nbackend = "openai"', "upstream"),
        ('[[models]]\nname = "x"\n[[models]]\nname = "x"', "unique"),
        ('[[models]]\nname = "has space"', "no spaces"),
        ("surprise = 1", "surprise"),
        ("port = [", "not valid TOML"),
    ],
)
def test_bad_config_is_refused_with_the_field(tmp_path, toml, words):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(InvalidRequest) as e:
        Settings.load(path)
    assert words in str(e.value) and str(path) in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InvalidRequest, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")
