"""The bridges' client runs inside editors' own Pythons: standard library only, Python 3.8 syntax."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
from platformdirs.macos import MacOS
from platformdirs.unix import Unix

from engine.server.config import write_engine_file
from plugin.uprez_client import DEFAULT_URL, Client, EngineNotRunning, config_dir, engine_url, read_token

CLIENT_FILES = sorted((Path(__file__).resolve().parents[2] / "plugin" / "uprez_client").glob("*.py"))
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}  # subscriptable from 3.9
NEWER_METHODS = {"removeprefix", "removesuffix", "is_relative_to", "with_stem", "lcm", "cache", "randbytes"}
NEWER_MODULES = {"zoneinfo", "graphlib", "tomllib"}


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.name)
def test_client_parses_as_python_3_8(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.name)
def test_client_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names or name == "__future__", f"{path.name}: {name}"


def _runtime_nodes(tree: ast.AST):
    """Nodes outside annotations: those are strings under `from __future__ import annotations`."""
    in_annotations = set()
    for node in ast.walk(tree):
        annotations = [getattr(node, "returns", None), getattr(node, "annotation", None)]
        for annotation in filter(None, annotations):
            in_annotations.update(id(sub) for sub in ast.walk(annotation))
    return [node for node in ast.walk(tree) if id(node) not in in_annotations]


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.name)
def test_client_uses_no_newer_runtime_features(path):
    tree = ast.parse(path.read_text())
    for node in _runtime_nodes(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            assert node.value.id not in BUILTIN_GENERICS, f"{where}: {node.value.id}[...] needs Python 3.9"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = (node.left, node.right)
            assert not any(isinstance(s, ast.Constant) and s.value is None for s in sides), f"{where}: X | None"
        if isinstance(node, ast.Attribute):
            assert node.attr not in NEWER_METHODS, f"{where}: .{node.attr} needs Python 3.9+"
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in NEWER_MODULES, f"{where}: {node.module} needs Python 3.9+"


def test_config_dir_matches_platformdirs():
    home = os.path.expanduser("~")
    assert config_dir("linux", {}) == Unix("uprez", appauthor=False, roaming=True).user_config_dir.replace(
        os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config")), os.path.join(home, ".config"))
    assert config_dir("linux", {"XDG_CONFIG_HOME": "/x/cfg"}) == "/x/cfg/uprez"
    assert config_dir("darwin", {}) == MacOS("uprez", appauthor=False, roaming=True).user_config_dir
    assert config_dir("win32", {"APPDATA": "C:\\Users\\a\\AppData\\Roaming"}).endswith("uprez")
    assert config_dir("linux", {"UPREZ_CONFIG_DIR": "/somewhere"}) == "/somewhere"
    from platformdirs import user_config_dir

    env = {k: v for k, v in os.environ.items() if k != "UPREZ_CONFIG_DIR"}
    assert config_dir(environ=env) == user_config_dir("uprez", appauthor=False, roaming=True)


def test_engine_is_found_through_env_then_engine_file_then_default(tmp_path):
    env = {"UPREZ_CONFIG_DIR": str(tmp_path)}
    assert engine_url(env) == DEFAULT_URL
    write_engine_file(tmp_path, "http://127.0.0.1:5555", pid=1)
    assert engine_url(env) == "http://127.0.0.1:5555"
    assert engine_url(dict(env, UPREZ_URL="http://10.0.0.2:9/")) == "http://10.0.0.2:9"
    (tmp_path / "token").write_text("secret\n")
    assert read_token(env) == "secret" and read_token(dict(env, UPREZ_TOKEN="other")) == "other"


def test_engine_not_running_says_how_to_start_it():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(EngineNotRunning, match="uprez serve"):
            Client(f"http://127.0.0.1:{port}", token="t").health()
