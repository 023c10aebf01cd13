"""`uprez serve` on a network address: plain HTTP is refused unless --insecure, which warns in red; the
loopback default is untouched (tests/server/test_serve_cli.py). The command runs in this process: the refusal
comes before anything is bound or written."""

from __future__ import annotations

from engine.cli import main as uprez
from engine.server.config import ServerConfig
from engine.server.run import _announce, certificate_for


def test_plain_http_on_a_network_address_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path))
    assert uprez(["serve", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"]) == 2
    stderr = capsys.readouterr().err
    assert "refusing to serve plain HTTP on 0.0.0.0" in stderr and "--remote" in stderr and "--insecure" in stderr
    assert list(tmp_path.iterdir()) == []  # nothing was published: no engine.json, no token


def test_insecure_plain_http_is_allowed_with_a_red_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NO_COLOR", raising=False)
    config = ServerConfig(host="0.0.0.0", config_dir=tmp_path, insecure=True)  # what `--insecure` makes
    certificate = certificate_for(config)
    assert certificate is None  # allowed, as plain HTTP
    _announce(config, "http://127.0.0.1:8742", certificate)
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("\033[1;31m") and warning.endswith("\033[0m") and "unencrypted" in warning
    _announce(ServerConfig(config_dir=tmp_path), "http://127.0.0.1:8742", None)  # loopback: nothing to say
    assert capsys.readouterr().err == ""
