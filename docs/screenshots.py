"""Screenshots of every dashboard view into docs/ui-*.png (run from the repository root):

    python docs/screenshots.py

Builds the tests' coarse → widen → fine study in a temporary directory, starts a fourth stage
in a thread (in-process, no Ray) so the live view has something running, serves it with the
real `hpsearch ui` and photographs each view with Debian's chromium.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from hpsearch.driver import run_stage, start_or_resume  # noqa: E402
from hpsearch.planner import StageRequest  # noqa: E402
from hpsearch.registry import qualified  # noqa: E402
from hpsearch.runtime.executor import InProcessExecutor, Workload  # noqa: E402
from hpsearch.spec import load_spec  # noqa: E402
from storage import StageKind, Store  # noqa: E402
from tests._ui import CHROMIUM, CHROMIUM_ARGS, UiServer, build_search, write_spec  # noqa: E402

VIEWS = {
    "studies": "/",
    "study": "/study/digits-mlp",
    "live": None,
    "trials": "/study/digits-mlp/trials?sort=best_value&desc=1",
    "curves": "/study/digits-mlp/curves?top=8",
    "params": "/study/digits-mlp/params",
    "parallel": "/study/digits-mlp/parallel",
    "sql": "/sql",
}


def running_stage(directory: Path, db: Path) -> tuple[threading.Thread, int]:
    """Stage `live` (300 trials of ~0.1 s) running in a thread; its stage id."""
    spec = load_spec(write_spec(directory, "live", trials=300, sleep=0.03))
    store = Store(str(db))
    _, stage, _ = start_or_resume(store, spec, StageRequest(StageKind.COARSE, 300, 3))
    executor = InProcessExecutor(Workload(qualified(spec.trainable), spec.metric, directory))
    thread = threading.Thread(target=run_stage, args=(store, spec, stage, executor), daemon=True)
    thread.start()
    return thread, stage.stage_id


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db = directory / "ui.db"
        build_search(directory, db)
        _, stage = running_stage(directory, db)
        VIEWS["live"] = f"/study/live/stage/{stage}"
        server = UiServer(db, cwd=directory)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 720})
                for name, path in VIEWS.items():
                    page.goto(server.base + str(path))
                    page.wait_for_selector("body[data-ready='1']")
                    if name == "sql":
                        page.click("button[data-example='5']")
                        page.wait_for_selector("#sql-table")
                    page.wait_for_timeout(2500 if name == "live" else 300)
                    page.screenshot(path=str(ROOT / "docs" / f"ui-{name}.png"))
                    print(f"docs/ui-{name}.png")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
