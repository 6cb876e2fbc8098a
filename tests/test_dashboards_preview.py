"""``driftline dashboards preview``: the drill-down's main panels drawn from a real Prometheus.

Prometheus scrapes the same driftline-shaped exposition the dashboards' own test serves
(:func:`tests.test_dashboards.exposition`); the preview's titles and reference lines are
compared with the generated dashboard JSON, so the picture follows the panel definitions.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from dashboards import preview
from dashboards.generator import FILES, generate
from monitor.cli.main import main
from monitor.config import Config, load_config
from monitor.errors import InputError, UnknownModel, UsageError
from tests.conftest import SAMPLE
from tests.servers import Prometheus, free_port, start_prometheus
from tests.test_dashboards import add_model, all_panels, config_with, exposition_server

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = SAMPLE / "driftline.yaml"
MODEL = "flight-delay"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(SAMPLE_CONFIG)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping a driftline-shaped /metrics page every second."""
    server = exposition_server()
    prom = None
    try:
        target = f"127.0.0.1:{server.server_address[1]}"
        prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), [target])
        prom.wait_for("count_over_time(driftline_window_fill_ratio[1m]) > 3", timeout=30)
        yield prom
    finally:
        if prom is not None:
            prom.stop()
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def model_board(config: Config) -> dict[str, Any]:
    return generate(config)[FILES["model"]]


# ---- against a real Prometheus

@pytest.mark.slow
def test_render_writes_a_png_of_the_main_panels_with_the_dashboards_titles(prometheus, config, tmp_path):
    out = tmp_path / "preview.png"
    titles = preview.render(prometheus=prometheus.url, model=MODEL, out=out, config=config, range_s=120,
                            step_s=1)
    assert titles == list(preview.DEFAULT_PANELS)
    in_json = [p["title"] for p in all_panels(model_board(config)) if p["title"] in titles]
    assert titles == in_json  # the same titles, in the dashboard's order
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = preview.size_px(len(titles))
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (height, width)
    assert image.std() > 0.01  # something was drawn
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_the_threshold_alpha_and_min_lines_are_dashed_series_as_the_dashboards_overrides(prometheus, config):
    end = time.time()
    panels = {p.title: p for p in preview.collect(prometheus=prometheus.url, model=MODEL, config=config,
                                                   panels=None, start=end - 120, end=end, step_s=1)}
    statistic = {s.label: s for s in panels["Drift statistic by feature"].series}
    assert statistic["dest (psi)"].dashed is False
    assert statistic["dest threshold"].dashed and statistic["dest threshold"].colour == "red"
    assert set(statistic["dest threshold"].values) == {0.2}
    assert "dep_delay threshold" not in statistic  # a p-value test: its level is in the next panel

    p_values = panels["p-values (log scale)"]
    assert p_values.log
    assert {s.label: s.dashed for s in p_values.series} == {"dep_delay (ks)": False, "dep_delay alpha": True}

    performance = {s.label: s for s in panels["Performance vs bounds"].series}
    assert {label for label, s in performance.items() if s.dashed} == {"accuracy min", "roc_auc min"}
    assert set(performance["accuracy min"].values) == {0.72}
    assert panels["Window fill"].unit == "percentunit"
    assert (panels["Window fill"].minimum, panels["Window fill"].maximum) == (0, 1)

    board = {p["title"]: p for p in all_panels(model_board(config))}
    for title, panel in panels.items():
        refs = {o["matcher"]["options"] for o in board[title]["fieldConfig"]["overrides"]}
        dashed_refs = {t["refId"] for t in board[title]["targets"] if t["refId"] in refs}
        assert bool(dashed_refs) == any(s.dashed for s in panel.series), title


@pytest.mark.slow
def test_panels_chosen_by_title_are_drawn_in_the_order_given(prometheus, config, tmp_path):
    chosen = ["Window rows", "Drift statistic by feature", "Evaluation duration"]
    out = tmp_path / "some.png"
    assert preview.render(prometheus=prometheus.url, model=MODEL, out=out, config=config, panels=chosen,
                          range_s=120) == chosen
    width, height = preview.size_px(3)
    assert matplotlib.image.imread(out).shape[:2] == (height, width)


@pytest.mark.slow
def test_a_model_without_any_data_is_one_line_and_no_picture(prometheus, tmp_path):
    config = config_with(tmp_path, add_model("eta"))
    out = tmp_path / "eta.png"
    with pytest.raises(InputError, match=r"no data for model 'eta'") as caught:
        preview.render(prometheus=prometheus.url, model="eta", out=out, config=config, range_s=120)
    assert "\n" not in str(caught.value)
    assert not out.exists()


@pytest.mark.slow
def test_the_command_draws_the_preview_end_to_end_and_its_bad_input_is_one_line(prometheus, tmp_path):
    out = tmp_path / "docs" / "preview.png"
    out.parent.mkdir()
    command = [sys.executable, "-m", "monitor.cli.main", "dashboards", "preview"]
    done = subprocess.run([*command, "--prometheus", prometheus.url, "--model", MODEL, "--out", str(out),
                           "-C", str(SAMPLE_CONFIG)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)

    bad = subprocess.run([*command, "--prometheus", prometheus.url, "--model", "nope", "--out", str(out),
                          "-C", str(SAMPLE_CONFIG)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("driftline: error: unknown model 'nope'") and bad.stderr.count("\n") == 1


# ---- failures, without Prometheus

def test_prometheus_down_is_one_input_error_line(config, tmp_path):
    url = dead_url()
    with pytest.raises(InputError, match=f"cannot reach Prometheus at {url}") as caught:
        preview.render(prometheus=url, model=MODEL, out=tmp_path / "p.png", config=config)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "p.png").exists()


def test_the_command_with_prometheus_down_is_one_line_and_exit_2(tmp_path, capsys):
    url = dead_url()
    code = main(["dashboards", "preview", "--prometheus", url, "--model", MODEL, "--out",
                 str(tmp_path / "p.png"), "-C", str(SAMPLE_CONFIG)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"driftline: error: cannot reach Prometheus at {url}: ") and err.count("\n") == 1


def test_the_command_without_a_config_asks_for_one(tmp_path, capsys):
    code = main(["dashboards", "preview", "--prometheus", dead_url(), "--model", MODEL, "--out",
                 str(tmp_path / "p.png")])
    _, err = capsys.readouterr()
    assert code == 2 and err == ("driftline: error: preview needs --config FILE: the dashboard it draws is "
                                 "generated from the config\n")


def test_the_command_without_its_options_says_what_it_needs(capsys):
    code = main(["dashboards", "preview", "--model", MODEL])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == "driftline: error: preview needs --prometheus URL, --model NAME and --out PNG\n"


def test_an_unknown_model_or_panel_is_a_usage_error(config, tmp_path):
    with pytest.raises(UnknownModel, match="unknown model 'flight-dely'.*did you mean 'flight-delay'"):
        preview.render(prometheus=dead_url(), model="flight-dely", out=tmp_path / "p.png", config=config)
    with pytest.raises(UsageError, match=r"no time-series panel titled 'Nope'"):
        preview.render(prometheus=dead_url(), model=MODEL, out=tmp_path / "p.png", config=config,
                       panels=["Nope"])
    with pytest.raises(UsageError, match=r"no time-series panel titled 'Drifted features, latest window'"):
        preview.render(prometheus=dead_url(), model=MODEL, out=tmp_path / "p.png", config=config,
                       panels=["Drifted features, latest window"])  # a table, not a time series


def test_a_panel_without_data_is_drawn_with_no_data_not_skipped(tmp_path):
    end = time.time()
    panels = [
        preview.Panel("With data", "short", False, None, None,
                      [preview.Series("a", [end - 60, end], [1.0, 2.0]),
                       preview.Series("a threshold", [end - 60, end], [1.5, 1.5], dashed=True,
                                      colour="red")]),
        preview.Panel("Empty", "none", True, None, None),
    ]
    out = tmp_path / "p.png"
    preview.draw(panels, model=MODEL, start=end - 120, end=end, out=out)
    width, height = preview.size_px(2)
    assert matplotlib.image.imread(out).shape[:2] == (height, width)


def test_the_no_data_text_and_the_footer_are_on_the_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    texts: list[str] = []
    close = plt.close

    def keep_texts(figure: Figure) -> None:
        texts.extend(t.get_text() for t in figure.findobj(matplotlib.text.Text))
        close(figure)

    monkeypatch.setattr(plt, "close", keep_texts)
    end = time.time()
    preview.draw([preview.Panel("Empty", "none", False, None, None)], model=MODEL, start=end - 60, end=end,
                 out=tmp_path / "p.png")
    assert "no data" in texts and "Empty" in texts
    assert preview.FOOTER in texts and "not a Grafana screenshot" in preview.FOOTER


def test_an_output_directory_that_does_not_exist_is_one_line(tmp_path):
    end = time.time()
    with pytest.raises(UsageError, match="does not exist"):
        preview.draw([preview.Panel("Empty", "none", False, None, None)], model=MODEL, start=end - 60,
                     end=end, out=tmp_path / "missing" / "p.png")
