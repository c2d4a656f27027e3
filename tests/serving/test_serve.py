"""``serve``: loading, the 0.0.0.0 warning, closing; uvicorn replaced by a stub."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pytest
import uvicorn

import fastrerank
from fastrerank.server import serve

from .fake_reranker import FakeReranker


class StubServer:
    """Stands in for ``uvicorn.Server``: records the config instead of serving."""

    runs: ClassVar[list[Any]] = []
    fail = False

    def __init__(self, config: Any) -> None:
        self.config = config
        self.should_exit = False

    def run(self) -> None:
        StubServer.runs.append(self.config)
        if StubServer.fail:
            raise OSError("address already in use")


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[FakeReranker]:
    made: list[FakeReranker] = []

    def load(path: str, *, device: str = "auto", compute_type: str = "default") -> FakeReranker:
        reranker = FakeReranker(path, device=device, compute_type=compute_type)
        made.append(reranker)
        return reranker

    monkeypatch.setattr(fastrerank, "Reranker", load, raising=False)
    monkeypatch.setattr(uvicorn, "Server", StubServer)
    monkeypatch.setattr(StubServer, "runs", [])
    monkeypatch.setattr(StubServer, "fail", False)
    return made


def test_serve_loads_each_model_runs_uvicorn_and_closes(loaded: list[FakeReranker], caplog: pytest.LogCaptureFixture) -> None:
    serve({"a": "/models/a", "b": "/models/b"}, port=8123, device="cpu", compute_type="int8")
    assert [r.model for r in loaded] == ["/models/a", "/models/b"]
    assert all(r.closed for r in loaded)
    (config,) = StubServer.runs
    assert (config.host, config.port) == ("127.0.0.1", 8123)
    assert not caplog.records


def test_serve_closes_the_models_when_uvicorn_fails(loaded: list[FakeReranker]) -> None:
    StubServer.fail = True
    with pytest.raises(OSError, match="address already in use"):
        serve({"a": "/models/a"})
    assert loaded[0].closed


@pytest.mark.parametrize(("host", "api_key", "warned"), [("0.0.0.0", None, True), ("::", None, True), ("0.0.0.0", "k", False), ("127.0.0.1", None, False)])
def test_serve_warns_on_every_interface_without_a_key(
    loaded: list[FakeReranker], caplog: pytest.LogCaptureFixture, host: str, api_key: str | None, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="fastrerank.server"):
        serve({"a": "/models/a"}, host=host, api_key=api_key)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(messages) == warned
    if warned:
        assert "without an API key" in messages[0]
    assert StubServer.runs[0].host == host


def test_missing_server_extra_names_the_pip_command() -> None:
    import subprocess
    import sys

    from .locations import subprocess_env

    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "try:\n"
        "    import fastrerank.server\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "MissingDependencyError fastrerank.server needs starlette: pip install 'fastrerank[server]'"


def test_command_line_passes_its_options_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastrerank.server
    from fastrerank._cli import main

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(fastrerank.server, "serve", lambda models, **options: calls.append((models, options)))
    assert main(["serve", "--model", "a=/models/a", "--model", "b=/models/b", "--port", "9001", "--api-key", "k",
                 "--max-documents", "5", "--max-concurrency", "2", "--queue-timeout", "1.5", "--compute-type", "int8"]) == 0
    assert calls == [({"a": "/models/a", "b": "/models/b"}, {
        "host": "127.0.0.1", "port": 9001, "api_key": "k", "device": "auto", "compute_type": "int8",
        "max_body_bytes": 2_000_000, "max_documents": 5, "max_concurrency": 2, "max_queue": None, "queue_timeout": 1.5,
        "body_timeout": 30.0, "max_body_bytes_in_flight": None, "header_timeout": 10.0, "keep_alive_timeout": 5.0,
        "max_connections": 512, "graceful_timeout": 30.0, "log_level": "info"})]
    calls.clear()
    assert main(["serve", "--model", "/models/one"]) == 0
    assert calls[0][0] == {"/models/one": "/models/one"}  # not a local folder: a hub id, kept
    calls.clear()
    assert main(["serve", "--max-queue", "7", "--body-timeout", "2", "--max-body-bytes-in-flight", "9000000",
                 "--header-timeout", "3", "--keep-alive-timeout", "4", "--max-connections", "64",
                 "--graceful-timeout", "6", "--log-level", "warning"]) == 0
    assert {key: calls[0][1][key] for key in ("max_queue", "body_timeout", "max_body_bytes_in_flight", "header_timeout",
                                              "keep_alive_timeout", "max_connections", "graceful_timeout", "log_level")} == {
        "max_queue": 7, "body_timeout": 2.0, "max_body_bytes_in_flight": 9_000_000, "header_timeout": 3.0,
        "keep_alive_timeout": 4.0, "max_connections": 64, "graceful_timeout": 6.0, "log_level": "warning"}


def test_command_line_serves_a_local_folder_under_its_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """/health, /info and the logs name a model by its folder's name, never by a path on the server."""
    import fastrerank.server
    from fastrerank._cli import main

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(fastrerank.server, "serve", lambda models, **options: calls.append((models, options)))
    folder = tmp_path / "bge-int8"
    folder.mkdir()
    assert main(["serve", "--model", f"{folder}/"]) == 0
    assert calls[0][0] == {"bge-int8": f"{folder}/"}
    other = tmp_path / "x" / "bge-int8"
    other.mkdir(parents=True)
    assert main(["serve", "--model", str(folder), "--model", str(other)]) == 2
    monkeypatch.setenv("FASTRERANK_API_KEY", "from-env")
    calls.clear()
    assert main(["serve", "--model", "a=/models/a"]) == 0  # the parser reads the default when built
    assert calls[0][1]["api_key"] == "from-env"


def test_serve_leaves_the_callers_logging_alone(loaded: list[FakeReranker]) -> None:
    # uvicorn's default log config installs handlers on its loggers: in a program that calls
    # serve(), logging is the program's to configure (the command line configures its own).
    # (uvicorn.access is emptied and stops propagating whatever the config: its access log is off.)
    names = ("uvicorn", "uvicorn.error")
    before = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate) for name in names}
    try:
        serve({"a": "/models/a"}, port=8123)
        after = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate) for name in names}
        assert {name: after[name][0] for name in names} == {name: before[name][0] for name in names}
        assert [after[name][1] for name in names] == [before[name][1] for name in names]
    finally:
        for name, (handlers, propagate) in before.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
