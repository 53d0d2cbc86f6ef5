"""`hpsearch ui` in a real browser (Debian's chromium via Playwright): every view on a real
study, numbers checked against SQL, the live view following a stage that runs on Ray, a brush,
a table filter, the SQL box, and the token off the default address.

One server (a subprocess of the real CLI) and one browser for the module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests._ui import CHROMIUM, CHROMIUM_ARGS, UiServer, build_search, wait_for, write_spec
from tests.conftest import ROOT, query, run_cli

STUDY = "digits-mlp"  # the study name of the README's example queries


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


FIRST_LAYER_STUDY = "fl-digits"  # softmax on digits that keeps checkpoints (first-layer images)


@pytest.fixture(scope="module")
def db(workdir: Path) -> Path:
    import hpsearch

    path = workdir / "ui.db"
    build_search(workdir, path)
    spec = {
        "name": FIRST_LAYER_STUDY, "trainable": "softmax", "metric": "val_acc", "mode": "max",
        "seed": 0, "fixed": {"batch": 100, "update": "adam"},
        "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
        "coarse": {"trials": 2, "epochs": 1}, "checkpoints": {"keep_trials": 1},
    }  # fmt: skip
    study = hpsearch.Study.from_spec(spec, db=str(path))
    study.coarse(executor="local")
    study.close()  # this process keeps no connection: the server and the live stage's own
    return path


@pytest.fixture(scope="module")
def server(db: Path, workdir: Path) -> Iterator[UiServer]:
    ui = UiServer(db, "--sql-timeout", "1", cwd=workdir)
    try:
        yield ui
    finally:
        assert ui.stop() == 130  # Ctrl-C stops it cleanly


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert errors == []  # no script error on any view


def open_view(page: Page, server: UiServer, path: str) -> None:
    page.goto(server.base + path)
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#error").count() == 0, page.inner_text("main")


def sql1(db: Path, sql: str) -> Any:
    return query(db, sql)[0][0]


def test_studies_view_matches_sql(page: Page, server: UiServer, db: Path) -> None:
    open_view(page, server, "/")
    row = page.locator(f"tr[data-study='{STUDY}']")
    best = sql1(
        db,
        "SELECT max(best_value) FROM trials t JOIN stages st USING (stage_id) "
        f"JOIN studies s USING (study_id) WHERE s.name = '{STUDY}' AND t.status = 'completed'",
    )
    assert float(row.locator("[data-col=best]").get_attribute("data-value") or "nan") == best
    assert float(row.locator("[data-col=best]").inner_text()) == pytest.approx(best, rel=1e-3)
    counts = dict(
        query(
            db,
            "SELECT t.status, count(*) FROM trials t JOIN stages st USING (stage_id) "
            f"JOIN studies s USING (study_id) WHERE s.name = '{STUDY}' GROUP BY t.status",
        )
    )
    text = row.locator("[data-col=counts]").inner_text()
    assert {s: int(n) for n, s in (p.split() for p in text.split(", "))} == counts
    assert row.locator("[data-col=stages]").inner_text() == "3"


def test_study_view_is_what_show_prints(page: Page, server: UiServer, db: Path) -> None:
    shown = run_cli("show", STUDY, "--db", str(db), "--json", cwd=db.parent)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    served = json.loads(urllib.request.urlopen(f"{server.base}/api/study/{STUDY}").read())
    assert served == document  # the page's data is `show --json`, read-only
    open_view(page, server, f"/study/{STUDY}")
    cards = page.locator("#timeline .stage-card")
    assert [c.get_attribute("data-stage") for c in cards.all()] == [
        str(s["id"]) for s in document["stages"]
    ]
    assert "widen" in cards.nth(1).inner_text().lower()  # a coarse stage on a proposal
    text = page.inner_text("main")
    for stage in document["stages"]:
        for flag in stage["flags"]:
            assert flag["message"] in text  # flags as sentences
        for reason in stage["reasons"].values():
            assert reason in text  # the proposal with its reasons
        section = page.locator(f"#stage-{stage['id']} .best b")
        assert float(section.get_attribute("data-value") or "nan") == stage["best"]["value"]


def test_trials_table_filters_and_sorts_on_the_server(
    page: Page, server: UiServer, db: Path
) -> None:
    open_view(page, server, f"/study/{STUDY}/trials")
    total = sql1(db, f"SELECT count(*) FROM trial_results WHERE study = '{STUDY}'")
    assert page.get_attribute("#trials-info", "data-total") == str(total)
    assert page.locator("#trials tr[data-trial]").count() == 50  # one page of 50
    page.select_option("#filter-status", "completed")
    page.select_option("#filter-param", "lr")
    page.fill("#filter-low", "0.0001")
    page.fill("#filter-high", "0.01")
    page.click("#apply")
    expected = sql1(
        db,
        "SELECT count(*) FROM trial_results r JOIN params p ON p.trial_id = r.trial_id "
        f"AND p.name = 'lr' WHERE r.study = '{STUDY}' AND r.status = 'completed' "
        "AND p.value BETWEEN 0.0001 AND 0.01",
    )
    page.wait_for_function(f"document.querySelector('#trials-info').dataset.total === '{expected}'")
    assert "status=completed" in page.url and "range=lr" in page.url  # a link to share
    page.click("th[data-sort=best_value]")  # best first (a max study)
    best = query(
        db,
        "SELECT r.trial_id FROM trial_results r JOIN params p ON p.trial_id = r.trial_id "
        f"AND p.name = 'lr' WHERE r.study = '{STUDY}' AND r.status = 'completed' "
        "AND p.value BETWEEN 0.0001 AND 0.01 ORDER BY r.best_value DESC, r.trial_id LIMIT 1",
    )[0][0]
    page.wait_for_function(
        f"document.querySelector('#trials tr[data-trial]').dataset.trial === '{best}'"
    )


@pytest.mark.parametrize("dense", ["", "?dense=1"])  # every line, or binned (> 20,000 trials)
def test_parallel_coordinates_brush(page: Page, server: UiServer, db: Path, dense: str) -> None:
    open_view(page, server, f"/study/{STUDY}/parallel{dense}")
    canvas = page.locator("canvas")
    axes = json.loads(canvas.get_attribute("data-axes") or "[]")
    assert [a[0] for a in axes] == ["lr", "reg", "dropout", "update", "val_acc"]
    completed = sql1(
        db, f"SELECT count(*) FROM trial_results WHERE study = '{STUDY}' AND status = 'completed'"
    )
    assert page.get_attribute("#pc-count", "data-selected") == str(completed)
    box = canvas.bounding_box()
    assert box is not None
    top, bottom = (
        float(canvas.get_attribute("data-top") or 0),
        float(canvas.get_attribute("data-bottom") or 0),
    )
    x = box["x"] + axes[-1][1]
    page.mouse.move(x, box["y"] + top + 2)  # brush the upper half of the metric axis
    page.mouse.down()
    page.mouse.move(x, box["y"] + (top + bottom) / 2, steps=5)
    page.mouse.up()
    low, high = json.loads(canvas.get_attribute("data-brushes") or "{}")["val_acc"]
    inside = sql1(
        db,
        f"SELECT count(*) FROM trial_results WHERE study = '{STUDY}' AND status = 'completed' "
        f"AND best_value BETWEEN {low} AND {high}",
    )
    assert 0 < inside < completed
    assert page.get_attribute("#pc-count", "data-selected") == str(inside)
    for value in page.locator("#pc-selected tr[data-trial] td.num").all_inner_texts():
        assert low - 1e-3 <= float(value) <= high + 1e-3


def test_learning_curves_of_top_k_and_a_picked_trial(
    page: Page, server: UiServer, db: Path
) -> None:
    worst = sql1(
        db,
        f"SELECT trial_id FROM trial_results WHERE study = '{STUDY}' AND status = 'completed' "
        "ORDER BY best_value ASC LIMIT 1",
    )
    open_view(page, server, f"/study/{STUDY}/curves?top=5&trials={worst}")
    top = [
        r[0]
        for r in query(
            db,
            f"SELECT trial_id FROM trial_results WHERE study = '{STUDY}' AND "
            "status = 'completed' ORDER BY best_value DESC, trial_id LIMIT 5",
        )
    ]
    shown = page.locator("#curves-legend tr[data-trial]")
    assert [int(r.get_attribute("data-trial") or 0) for r in shown.all()] == [*top, worst]
    assert page.locator("#curves-legend tr.picked").get_attribute("data-trial") == str(worst)
    assert page.locator(".chart canvas").count() >= 1


def test_a_picked_trial_shows_its_first_layer_from_its_checkpoint(
    page: Page, server: UiServer, db: Path
) -> None:
    kept = sql1(db, "SELECT DISTINCT trial_id FROM checkpoints")  # keep_trials = 1: the best
    pruned = sql1(db, f"SELECT trial_id FROM trials WHERE trial_id <> {kept} AND stage_id = "
                      f"(SELECT stage_id FROM trials WHERE trial_id = {kept})")  # fmt: skip
    open_view(page, server, f"/study/{FIRST_LAYER_STUDY}/curves?top=0&trials={kept},{pruned}")
    page.wait_for_function(
        f"document.querySelector('img.first-layer[data-trial=\"{kept}\"]')?.naturalWidth > 0"
    )
    page.wait_for_function(  # the pruned trial has no checkpoint: its image is taken away
        f"!document.querySelector('img.first-layer[data-trial=\"{pruned}\"]')"
    )
    png = urllib.request.urlopen(
        f"{server.base}/api/study/{FIRST_LAYER_STUDY}/first_layer/{kept}.png"
    )
    assert png.headers["Content-Type"] == "image/png" and png.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(
            f"{server.base}/api/study/{FIRST_LAYER_STUDY}/first_layer/{pruned}.png"
        )
    assert missing.value.code == 404


@pytest.mark.parametrize("dense", ["", "?dense=1"])  # squares, or pixels (> 20,000 trials)
def test_metric_against_each_parameter(page: Page, server: UiServer, db: Path, dense: str) -> None:
    open_view(page, server, f"/study/{STUDY}/params{dense}")
    names = {r[0] for r in query(db, "SELECT DISTINCT name FROM params")}
    charts = page.locator("#param-charts canvas")
    axes = {c.get_attribute("data-param"): c.get_attribute("data-axis") for c in charts.all()}
    assert set(axes) == names
    assert axes == {"lr": "log", "reg": "log", "dropout": "linear", "update": "categories"}
    heading = page.inner_text("h1")
    completed = sql1(
        db, f"SELECT count(*) FROM trial_results WHERE study = '{STUDY}' AND status = 'completed'"
    )
    assert f"({completed} finished trials)" in heading


def test_sql_box_runs_an_example_and_downloads_csv(page: Page, server: UiServer, db: Path) -> None:
    open_view(page, server, "/sql")
    examples = json.loads((ROOT / "hpsearch/ui/static/examples.json").read_text())
    last = len(examples) - 1  # coarse versus fine, per stage
    page.click(f"button[data-example='{last}']")
    page.wait_for_selector("#sql-table")
    rows = query(db, examples[last]["sql"])
    assert page.locator("#sql-table tr").count() == len(rows) + 1
    with page.expect_download() as download:
        page.click("#sql-csv")
    path = download.value.path()
    got = list(csv.reader(io.StringIO(Path(path).read_text())))
    assert [int(r[0]) for r in got[1:]] == [r[0] for r in rows]


def test_sql_box_refuses_a_write_and_the_file_is_unchanged(
    page: Page, server: UiServer, db: Path
) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    open_view(page, server, "/sql")
    page.fill("#sql-text", "DELETE FROM trials")
    page.click("#sql-run")
    page.wait_for_selector("#sql-error")
    assert "DELETE is not allowed" in page.inner_text("#sql-error")
    page.fill(
        "#sql-text",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    )
    page.click("#sql-run")
    page.wait_for_selector("#sql-error")
    assert "stopped after 1 s" in page.inner_text("#sql-error")  # the time limit per query
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_every_example_query_is_the_readme_s() -> None:
    readme = (ROOT / "README.md").read_text()
    examples = json.loads((ROOT / "hpsearch/ui/static/examples.json").read_text())
    assert len(examples) >= 5
    for example in examples:
        assert example["sql"] in readme


def test_live_view_follows_a_stage_running_on_ray(
    page: Page, server: UiServer, db: Path, workdir: Path, ray_address: str
) -> None:
    spec = write_spec(workdir, "live", trials=24, sleep=0.15)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "coarse",
            str(spec),
            "--db",
            str(db),
            "--quiet",
            "--address",
            ray_address,
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stage = wait_for(
            lambda: query(
                db,
                "SELECT st.stage_id FROM stages st JOIN studies s USING (study_id) "
                "WHERE s.name = 'live'",
            ),
            timeout=180,
            what="the live stage to start",
        )[0][0]
        open_view(page, server, f"/study/live/stage/{stage}")
        assert page.inner_text("#live-total") == "24"
        seen = {int(page.inner_text("#live-done"))}
        wait_for(
            lambda: seen.add(int(page.inner_text("#live-done"))) or len(seen) >= 3,
            timeout=180,
            what="the live view to advance twice without a reload",
            every=0.1,
        )
        partial = json.loads(urllib.request.urlopen(f"{server.base}/api/study/live/points").read())
        out, err = run.communicate(timeout=240)
        assert run.returncode == 0, err
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    page.wait_for_function("document.querySelector('#live-done').textContent === '24'")
    best = sql1(db, f"SELECT max(best_value) FROM trials WHERE stage_id = {stage}")
    assert float(page.inner_text("#live-best")) == pytest.approx(best, rel=1e-3)
    finished = page.locator("#live-recent tr")
    assert finished.count() == 10
    assert int(page.inner_text("#live-updates")) >= 3
    assert int(page.inner_text("#live-epochs")) > 0  # epochs streamed in since it opened
    # the plots' data read mid-run grows by what finished since, to exactly what SQL counts
    open_view(page, server, "/study/live/params")
    completed = sql1(
        db, f"SELECT count(*) FROM trials WHERE stage_id = {stage} AND status = 'completed'"
    )
    assert partial["count"] <= completed
    assert f"({completed} finished trials)" in page.inner_text("h1")


def test_off_the_default_address_a_token_is_required(
    browser: Browser, db: Path, workdir: Path
) -> None:
    # 127.0.0.2 is loopback (no traffic leaves the machine) but not the default address
    ui = UiServer(db, "--host", "127.0.0.2", cwd=workdir)
    try:
        assert "?token=" in ui.url
        for url in (f"{ui.base}/api/studies", f"{ui.base}/api/studies?token=wrong", ui.base):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url)
            assert refused.value.code == 403
        context = browser.new_context()
        tab = context.new_page()
        tab.goto(ui.base + "/")
        assert "needs its token" in tab.inner_text("body")
        tab.goto(ui.url)  # the printed URL: the token becomes a cookie for later pages
        tab.wait_for_selector("body[data-ready='1']")
        tab.goto(f"{ui.base}/study/{STUDY}")
        tab.wait_for_selector("#timeline")
        context.close()
    finally:
        assert ui.stop() == 130


def test_host_header_of_another_site_is_refused(server: UiServer) -> None:
    request = urllib.request.Request(
        f"{server.base}/api/studies", headers={"Host": "attacker.example:80"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 403  # DNS rebinding: a page of another site cannot read it


def test_bad_input_is_one_line_and_exit_2(workdir: Path) -> None:
    for args, words in (
        (("--db", str(workdir / "nothing.db")), "no database at"),
        (("--host", "not an address"), "--host not an address: not an IP address"),
    ):
        result = run_cli("ui", *args, "--port", "0", cwd=workdir, timeout=60)
        assert result.returncode == 2
        assert words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_dashboard_imports_no_ray() -> None:
    code = (
        "import sys, hpsearch.ui.server, hpsearch.cli.ui; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
