"""What a user sees of a run in the MLflow UI: screenshots of its pages, taken in headless Chromium.

    python scripts/mlflow_ui_check.py STORE_DIR [--out DIR] [--run RUN_ID] [--browser PATH]

STORE_DIR holds `mlflow.db` (and `mlartifacts/`), e.g. a quickstart's `quickstart_run/`. The script
starts `mlflow ui` on 127.0.0.1 against it, and saves PNGs of the run's overview, its metric charts,
its artifacts and the two figures it logs (learning curves, confusion matrix), plus the experiment's
run table. Needs Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`);
nothing is downloaded at run time. Playwright waits until a page has (nearly) stopped loading before the
screenshot (the metric charts fetch their histories after the page itself has loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = {  # file name -> (the UI's route for the run (MLflow 3), the artifact to open there)
    "run_overview.png": ("#/experiments/{exp}/runs/{run}", None),
    "run_metrics.png": ("#/experiments/{exp}/runs/{run}/model-metrics", None),
    "run_artifacts.png": ("#/experiments/{exp}/runs/{run}/artifacts", None),
    "learning_curves.png": ("#/experiments/{exp}/runs/{run}/artifacts", "learning_curves.png"),
    "confusion_matrix.png": ("#/experiments/{exp}/runs/{run}/artifacts", "confusion_matrix.png"),
    "experiment_runs.png": ("#/experiments/{exp}/runs", None),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_run(db: Path, run_id: str | None) -> tuple[str, str]:
    """(experiment id, run id): the given run, else the store's most recent top-level run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    if run_id:
        return client.get_run(run_id).info.experiment_id, run_id
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=50)
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags] or runs
    if not runs:
        sys.exit(f"no runs in {db}")
    return runs[0].info.experiment_id, runs[0].info.run_id


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("mlflow ui exited before it answered")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"mlflow ui did not answer at {url} within {seconds:.0f} s")


def model_training_view(page) -> None:
    """MLflow 3.17 opens in its GenAI view with its assistant's panel open; a training platform's user
    switches to "Model training" (the UI keeps the choice) and closes the panel, as done here."""
    from playwright.sync_api import Error as PlaywrightError

    with contextlib.suppress(PlaywrightError):
        page.get_by_text("Model training", exact=True).first.click(timeout=5000)
    with contextlib.suppress(PlaywrightError):
        page.get_by_role("button", name="Close", exact=True).first.click(timeout=5000)
    page.wait_for_timeout(1000)


def screenshots(browser: str, urls: dict[str, tuple[str, str | None]], out: Path) -> None:
    """Each page once the network is idle, full height, in MLflow's model-training view."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": 1500, "height": 1000})
        for i, (name, (url, artifact)) in enumerate(urls.items()):
            page.goto(url, wait_until="load", timeout=120_000)
            with contextlib.suppress(PlaywrightTimeout):  # the UI polls (auto-refresh): idle may never come
                page.wait_for_load_state("networkidle", timeout=20_000)
            if i == 0:
                model_training_view(page)
            if artifact:
                page.get_by_text(artifact, exact=True).first.click()
            page.wait_for_timeout(3000)  # charts and previews draw after their data arrives
            page.screenshot(path=str(out / name), full_page=True)
            print(out / name)
        chromium.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="directory holding mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("mlflow_ui_screens"))
    parser.add_argument("--run", default=None, help="run id (default: the latest top-level run)")
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    db = args.store / "mlflow.db"
    if not db.is_file() or not args.browser:
        sys.exit(f"need {db} and a Chromium (--browser)")
    exp, run = latest_run(db, args.run)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow), "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{db.resolve()}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url, proc)
        args.out.mkdir(parents=True, exist_ok=True)
        pages = {name: (f"{url}/{route.format(exp=exp, run=run)}", artifact)
                 for name, (route, artifact) in PAGES.items()}
        screenshots(args.browser, pages, args.out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
