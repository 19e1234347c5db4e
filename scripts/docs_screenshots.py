"""What a reader sees of the docs site: screenshots of its built pages, taken in headless Chromium.

    make docs && python scripts/docs_screenshots.py [--out DIR] [--pages index data reference/config]

Opens each page of `docs/_build/html` (as `file://`, no server) in a system Chromium
(`apt-get install chromium`) at a laptop's window size and saves `DIR/<page>.png` (default
`docs_screens/`). Look at them after a change to the pages' layout: the configuration reference's
tables, the navigation, the code blocks' width. Nothing is downloaded; the site must be built first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "docs" / "_build" / "html"
DEFAULT_PAGES = ("index", "quickstart", "data", "reference/config")


def screenshot(browser: str, page: Path, png: Path, width: int, height: int) -> None:
    """One page's PNG; a one-line error when Chromium writes none."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not png.is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"docs_screenshots: {browser} wrote no screenshot of {page.name} ({tail})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs_screens"))
    parser.add_argument("--pages", nargs="+", default=list(DEFAULT_PAGES), help="pages, as paths under the site")
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--size", default="1440x1200", help="window WIDTHxHEIGHT (default 1440x1200)")
    args = parser.parse_args()
    if not args.browser:
        print("docs_screenshots: no Chromium found (apt-get install -y chromium, or pass --browser)", file=sys.stderr)
        return 2
    missing = [p for p in args.pages if not (SITE / f"{p}.html").is_file()]
    if missing:
        print(f"docs_screenshots: {', '.join(missing)} not in {SITE} (run `make docs` first)", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    for page in args.pages:
        png = args.out / f"{page.replace('/', '_')}.png"
        png.unlink(missing_ok=True)
        screenshot(args.browser, SITE / f"{page}.html", png, width, height)
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
