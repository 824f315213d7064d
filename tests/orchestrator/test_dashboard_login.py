"""The dashboard's login form says where this server's tokens are: the token file as the user on the server finds
it (~/.strato/api-token for the default home, $STRATO_HOME/api-token otherwise, never a server path beyond that),
or the environment variable the server was started with."""

import os

from fastapi.testclient import TestClient

from orchestrator.api import ApiSettings, create_app


def login_hint(home) -> str:
    client = TestClient(create_app(str(home / "state.db"), ApiSettings()))
    page = client.get("/").text
    start = page.index('id="token-hint"')
    return page[start:page.index("</p>", start)]


def test_login_form_names_the_token_file_of_the_default_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("STRATO_HOME", str(tmp_path / ".strato"))
    for name in ("STRATO_API_TOKEN", "STRATO_API_READ_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    hint = login_hint(tmp_path / ".strato")
    assert "<code>~/.strato/api-token</code>" in hint and "<code>~/.strato/api-token.read</code>" in hint, hint
    assert os.path.isfile(tmp_path / ".strato" / "api-token")  # where the hint says it is
    assert str(tmp_path) not in hint


def test_login_form_with_another_home_or_tokens_from_the_environment(tmp_path, monkeypatch):
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("STRATO_HOME", str(home))
    monkeypatch.delenv("STRATO_API_TOKEN", raising=False)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", "r" * 32)
    hint = login_hint(home)
    assert "<code>$STRATO_HOME/api-token</code>" in hint and "$STRATO_API_READ_TOKEN" in hint, hint
    assert str(tmp_path) not in hint
