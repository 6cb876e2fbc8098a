"""``driftline collect`` on a multi-model server (issue 15, defect 4): ``--model`` is optional,
``--model-map served=configured,...`` renames, and a malformed flag is one line, not a traceback."""

from __future__ import annotations

import pytest

from collectors.proxy.server import ProxySettings
from collectors.sidecar import naming

BASE = ["collect", "--upstream", "http://127.0.0.1:8080", "--kafka", "k:9092"]


def settings_of(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[object]:
    from monitor.cli.main import main

    seen: list[object] = []
    monkeypatch.setattr("collectors.sidecar.run", seen.append)
    assert main([*BASE, *args]) == 0
    return seen


def test_without_model_each_calls_model_comes_from_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    [settings] = settings_of(monkeypatch)
    assert settings.proxy.model is None and settings.proxy.model_map is None  # type: ignore[attr-defined]


def test_the_model_map_comes_from_its_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    [flag] = settings_of(monkeypatch, "--model-map", "sum=adder, multi=multi-v2")
    monkeypatch.setenv("DRIFTLINE_MODEL_MAP", "a=b")
    [env] = settings_of(monkeypatch, "--model", "m")
    assert flag.proxy.model_map == {"sum": "adder", "multi": "multi-v2"}  # type: ignore[attr-defined]
    assert (env.proxy.model, env.proxy.model_map) == ("m", {"a": "b"})  # type: ignore[attr-defined]


@pytest.mark.parametrize(("args", "message"), [
    (["--model-map", "sum"], "--model-map entries are served=configured; got 'sum'"),
    (["--model-map", "a=b,a=c"], "--model-map names 'a' twice"),
    (["--model", " "], "--model must not be empty"),
])
def test_a_malformed_model_flag_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            args: list[str], message: str) -> None:
    from monitor.cli.main import main

    monkeypatch.setattr("collectors.sidecar.run", lambda settings: None)
    assert main([*BASE, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_startup_line_says_how_the_model_is_chosen() -> None:
    multi = naming(ProxySettings(upstream="http://x", model=None, model_map={"sum": "adder"}))
    assert "the model named by each request's path" in multi and "no_model" in multi and "sum=adder" in multi
    assert naming(ProxySettings(upstream="http://x", model="m")) == "model m"
    assert "\n" not in multi
