"""`doodl report`: a sweep's static web page, checked as files and as Chromium renders it."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from doodl.orchestrator.report import write_report
from doodl.orchestrator.store import SweepStore
from tests.chromium import needs_chromium, render
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec
from tests.orchestrator.stores import train_in_process


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


class _Cells(HTMLParser):
    """The cells of one table: per row, (text, attributes) of each header or data cell."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.rows = table_id, []
        self._depth, self._cell = 0, None  # tables entered since the wanted one opened; the open cell

    def handle_starttag(self, tag, attrs):
        if tag == "table" and (self._depth or dict(attrs).get("id") == self.table_id):
            self._depth += 1
        elif self._depth == 1 and tag == "tr":
            self.rows.append([])
        elif self._depth == 1 and tag in ("td", "th"):
            self._cell = ["", dict(attrs)]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag):
        if tag == "table" and self._depth:
            self._depth -= 1
        elif self._depth == 1 and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((" ".join(self._cell[0].split()), self._cell[1]))
            self._cell = None


def _table(html: str, table_id: str) -> list[dict[str, tuple[str, dict]]]:
    """The rows of a table as {header text: (cell text, cell attributes)}."""
    parser = _Cells(table_id)
    parser.feed(html)
    header = [text for text, _ in parser.rows[0]]
    return [dict(zip(header, row)) for row in parser.rows[1:]]


def _section(html: str, gid: str) -> str:
    """The HTML of a group's collapsed section."""
    start = html.index(f'<details class="group" id="group-{gid}">')
    return html[start:html.index("</details>", start)]


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
    # two seeds a group: the reduction gives no verdict on basins, and the page says so
    rows = _table(html, "groups-table")
    assert all(r["vs baseline"][0] == "too few runs" and r["attractors"][0] == "-" for r in rows)
    assert all(r["vs baseline"][1]["title"].startswith("too few runs to resolve basins") for r in rows)
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


REASON = "too few runs to resolve basins: 3 non-diverged, at least 8 needed (raise seeds); the graph is an illustration"


@pytest.fixture(scope="module")
def faked(tmp_path_factory):
    """A sweep trained in this process (no Ray) with a Morse table written by hand, in the
    columns a reduction writes: a group that beats the baseline, one without a verdict (its
    reason also among its warnings, as the reduction puts it, and a stale attractor count
    that must not show), one below the baseline, and one without a Morse row; the first two
    have Morse pictures."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from doodl.analysis.schemas import MORSE_GROUP_SCHEMA

    tmp = tmp_path_factory.mktemp("faked")
    store = train_in_process(str(tmp / "store"), tiny_spec_dict("faked", optimizer={"steps": 15}))
    gids = sorted({v["group_id"] for v in store.read_variants().to_pylist()})
    verdict = {"n_outcomes": 2, "outcome_sizes": [5, 3], "n_attractors": 2, "ari": 0.8125, "outcome_accuracy": 0.875,
               "outcome_chance": 0.625, "baseline_accuracy": 0.75, "versus_baseline": "beats",
               "self_basin_accuracy": 1.0, "self_basin_chance": 0.5}
    rows = [{"group_id": gids[0], **verdict, "warnings": ["1 outcome mode(s) hold fewer than 4 runs <b>sparse</b>"]},
            {"group_id": gids[1], "no_verdict": REASON, "n_attractors": 3, "n_morse_sets": 4,
             "warnings": [REASON, "2 diverged run(s) left out of the coordinates, the map and the box"]},
            {"group_id": gids[2], **verdict, "outcome_accuracy": 0.5, "baseline_accuracy": 0.75,
             "versus_baseline": "below", "warnings": []}]
    reduction = Path(store.root) / "reduction"
    for gid in gids[:2]:
        (reduction / "plots" / gid).mkdir(parents=True)
        for name in ("morse_graph.png", "morse_sets.png"):
            (reduction / "plots" / gid / name).write_bytes(b"\x89PNG\r\n\x1a\n")  # the page only links them
    pq.write_table(pa.Table.from_pylist(rows, MORSE_GROUP_SCHEMA), reduction / "morse.parquet")
    html = write_report(store, tmp / "report").index.read_text()
    return gids, html


MORSE_HEADERS = ["outcome modes", "attractors", "ARI", "outcome acc.", "chance", "baseline acc.", "vs baseline"]


def test_the_groups_table_grades_morse_graphs_against_outcomes_and_a_baseline(faked):
    gids, html = faked
    rows = {row["group"][0]: row for row in _table(html, "groups-table")}
    header = list(next(iter(rows.values())))
    assert header[header.index("CKA") + 1:header.index("Koopman class")] == MORSE_HEADERS
    assert "basin acc." not in header
    cells = {g[:8]: [rows[g[:8]][h][0] for h in MORSE_HEADERS] for g in gids}
    assert cells[gids[0][:8]] == ["2", "2", "0.8125", "0.875", "0.625", "0.75", "beats"]
    assert cells[gids[2][:8]] == ["2", "2", "0.8125", "0.5", "0.625", "0.75", "below"]
    assert cells[gids[3][:8]] == [""] * 7  # no Morse row: nothing to say
    assert [rows[g[:8]]["vs baseline"][1]["class"] for g in gids[::2]] == ["ok", "bad"]
    assert "graded against outcome modes found without the graph" in " ".join(html.split())
    assert "nearest-neighbour baseline" in html and "Basin accuracy is held out" not in html


def test_a_group_without_a_verdict_shows_dashes_and_the_reason(faked):
    gids, html = faked
    row = {r["group"][0]: r for r in _table(html, "groups-table")}[gids[1][:8]]
    assert [row[h][0] for h in MORSE_HEADERS[:-1]] == ["-"] * 6  # the stale attractor count is not shown
    marker, attrs = row["vs baseline"]
    assert marker == "too few runs" and attrs["title"] == REASON
    section = _section(html, gids[1])
    assert REASON in section and "no verdict on attractors or basins" in section
    assert "held-out outcome accuracy" not in section
    # the pictures' key says they are an illustration and names no attractor
    from doodl.analysis.morse import CONLEY_NOTATION, NO_VERDICT_NOTE, NODE_STYLES

    assert NO_VERDICT_NOTE in section and CONLEY_NOTATION in section
    assert NODE_STYLES["attractor"] not in section


def test_each_group_shows_its_warnings_and_the_key_to_its_morse_pictures(faked):
    from doodl.analysis.morse import CONLEY_NOTATION, NO_VERDICT_NOTE, NODE_STYLES

    gids, html = faked
    first = _section(html, gids[0])
    assert "<li>morse: 1 outcome mode(s) hold fewer than 4 runs &lt;b&gt;sparse&lt;/b&gt;</li>" in first  # escaped
    assert "held-out outcome accuracy <b>0.875</b>" in first and "(5, 3 runs)" in first
    assert all(text in first for text in NODE_STYLES.values()) and CONLEY_NOTATION in first
    assert NO_VERDICT_NOTE not in first
    second = _section(html, gids[1])
    assert "<li>morse: 2 diverged run(s) left out of the coordinates, the map and the box</li>" in second
    assert second.count(REASON) == 1  # once, as the reason, not again among the warnings
    # no Morse pictures: no key; no warnings: no list
    assert CONLEY_NOTATION not in _section(html, gids[2]) and 'class="warnings"' not in _section(html, gids[2])


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
