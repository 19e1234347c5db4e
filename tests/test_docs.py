"""The front page stays a front page: at most 150 lines, the two set-up commands first, and every
relative link it makes points at a file of the repository. The docs site itself is checked by its
strict build (`make docs`: a broken link, a missing target or a page outside the navigation fails)."""

from __future__ import annotations

import re

from tests.support import REPO

README = REPO / "README.md"


def test_readme_is_a_front_page_that_opens_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    fence = lines.index("```bash")
    commands = [ln.split("#")[0].strip() for ln in lines[fence + 1:lines.index("```", fence)]]
    assert commands == ["make quickstart", "make test"]
    assert fence <= 2  # right under the title


def test_readme_links_point_at_files_of_the_repository():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if "://" not in t]
    assert local and [t for t in local if not (REPO / t).exists()] == []
