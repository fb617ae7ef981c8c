"""`doodl report`: a sweep's static web page, checked as files and as Chromium renders it."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestrator.report import write_report
from orchestrator.store import SweepStore
from tests.chromium import needs_chromium, render
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec


class _Elements(HTMLParser):
    """Ids, images and the rows of each table of a page."""

    def __init__(self):
        super().__init__()
        self.ids: dict[str, dict] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: dict[str, int] = {}
        self._table: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = {"tag": tag, **a}
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "table":
            self._table.append(a.get("id", ""))
        if tag == "tr" and self._table:
            self.rows[self._table[-1]] = self.rows.get(self._table[-1], 0) + 1

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()


def _elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def audited(tmp_path_factory, ray_session):
    """A reduced sweep audited against itself (nothing retrained: verdict ok): it has
    everything a report shows (groups, pictures, runs in MLflow, an audit)."""
    tmp = tmp_path_factory.mktemp("report")
    spec = write_spec(tmp, tiny_spec_dict("rep", reduce=FAST_REDUCE))
    store, db = str(tmp / "store"), f"sqlite:///{tmp / 'mlflow.db'}"
    code, _, err = run_cli(["sweep", str(spec), "--store", store, "--tracking-uri", db, "--no-progress", "--reduce"])
    assert code == 0, err
    code, out, err = run_cli(["audit", str(spec), "--baseline", "rep", "--store", store, "--tracking-uri", db,
                              "--no-progress"])
    assert code == 0, err
    outcome = write_report(SweepStore(store, "rep"), tmp / "report", tracking_uri=db)
    return tmp, SweepStore(store, "rep"), db, outcome


def test_the_report_holds_every_group_its_pictures_runs_and_audit(audited):
    tmp, store, _, outcome = audited
    html = outcome.index.read_text()
    page = _elements(html)
    groups = {v["group_id"] for v in store.read_variants().to_pylist()}
    assert outcome.n_groups == len(groups) == 4 and outcome.n_runs == 8
    assert {f"group-{g}" for g in groups} <= set(page.ids)
    assert page.rows["groups-table"] == 1 + 4 and page.rows["runs-table"] == 1 + 8
    assert page.rows["audits-table"] == 2 and '<td class="ok">ok</td>' in html  # one audit, verdict ok
    # every picture the page shows was copied beside it, under a relative path
    assert page.images and all((outcome.index.parent / src).is_file() for src in page.images)
    assert "img/phase_diagram.png" in page.images and "img/koopman_classes.png" in page.images
    assert sum(src.endswith("/ntk.png") for src in page.images) == 4
    # each run links to its MLflow run, which exists
    from mlflow.tracking import MlflowClient

    client = MlflowClient(audited[2])
    run_links = [link for link in page.links if "/runs/" in link]
    assert len(run_links) == 8 and all(link.startswith("http://127.0.0.1:5000/#/experiments/") for link in run_links)
    run_id = run_links[0].rsplit("/", 1)[1].split("?")[0]
    assert client.get_run(run_id).data.tags["doodl.sweep_id"] == store.sweep_id
    assert all(link.endswith("?workflowType=machine_learning") for link in run_links)


def test_the_report_is_an_artifact_of_the_parent_run(audited):
    from mlflow.tracking import MlflowClient

    _, store, db, outcome = audited
    client = MlflowClient(db)
    parent = client.get_run(outcome.mlflow_artifact)
    assert parent.data.tags["doodl.role"] == "parent" and parent.data.tags["doodl.sweep_id"] == store.sweep_id
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/index.html", "report/img"} <= names


def test_a_report_escapes_what_it_shows(tmp_path, audited):
    """Text from the store reaches the page escaped: a group's error with markup stays text."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    _, store, _, _ = audited
    copy = tmp_path / "store"
    shutil.copytree(Path(store.root), copy / store.sweep_id)
    path = copy / store.sweep_id / "reduction" / "ntk.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["error"] = "<script>alert(1)</script>"
    pq.write_table(pa.Table.from_pylist(rows, pq.read_schema(path)), path)
    html = write_report(SweepStore(str(copy), store.sweep_id), tmp_path / "r").index.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html


def test_an_unreachable_mlflow_leaves_the_report_without_links_and_says_why(audited, tmp_path):
    _, store, _, _ = audited
    outcome = write_report(store, tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path}/elsewhere/m.db")
    assert outcome.mlflow_error == f"no MLflow database at {tmp_path}/elsewhere/m.db"
    assert outcome.mlflow_artifact is None and not (tmp_path / "elsewhere").exists()  # no empty database made
    page = _elements(outcome.index.read_text())
    assert not [link for link in page.links if "/runs/" in link] and page.rows["runs-table"] == 1 + 8


@needs_chromium
def test_chromium_renders_the_report_without_console_errors(audited, tmp_path):
    _, store, _, outcome = audited
    shot = tmp_path / "report.png"
    page = render(outcome.index.as_uri(), tmp_path, screenshot=shot)
    assert page.console == []
    dom = _elements(page.dom)
    groups = {v["group_id"] for v in store.read_variants().to_pylist()}
    assert dom.ids["phase-diagram"]["tag"] == "figure" and {f"group-{g}" for g in groups} <= set(dom.ids)
    assert dom.rows["audits-table"] == 2 and dom.rows["groups-table"] == 5
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


@needs_chromium
def test_the_console_check_sees_a_broken_page(tmp_path):
    """The check above can fail: a page with a script error shows up in the console."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in render(page.as_uri(), tmp_path).console)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(audited):
    """`mlflow server` on the sweep's SQLite database, as a user opens it."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    tmp, _, db, _ = audited
    port = _free_port()
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", db, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_experiment_is_tagged_for_model_training(mlflow_ui):
    """Through MLflow's REST API: the experiment's kind says training runs, not GenAI."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{mlflow_ui}/api/2.0/mlflow/experiments/get-by-name?experiment_name=rep") as r:
        tags = {t["key"]: t["value"] for t in json.load(r)["experiment"]["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"


@needs_chromium
def test_the_reports_mlflow_link_opens_on_the_training_runs(mlflow_ui, audited, tmp_path):
    """The report's MLflow link opens MLflow's runs page (with the sweep's parent run), not the
    GenAI overview that MLflow 3.17 shows by default whatever the experiment's kind."""
    _, _, _, outcome = audited
    link = next(a for a in _elements(outcome.index.read_text()).links if "/runs/" not in a and "#/experiments/" in a)
    shot = tmp_path / "mlflow.png"
    page = render(link.replace("http://127.0.0.1:5000", mlflow_ui), tmp_path, screenshot=shot, size="1400,900",
                  wait_ms=20_000)
    assert "matching runs" in page.dom and ">rep<" in page.dom  # the runs table, the parent run's row
    assert "No data available for the selected time range" not in page.dom  # the GenAI trace charts
    print(f"screenshot: {shot}")
