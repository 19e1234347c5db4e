"""The front page stays a front page: at most 150 lines, the two set-up commands first, and every
relative link it makes points at a file of the repository. The docs site itself is checked by its
strict build (`make docs`: a broken link, a missing target or a page outside the navigation fails).

The pages' examples on the built-in data cannot go stale: a ```bash block right under the line
`<!-- test: runs -->` is run here, page after page in the order a reader walks them (each page's
examples use what the pages before made), from a directory that looks like the repository root
(`experiments/` in it). `vfn ...` lines run in this process, on the tests' shared Ray; other lines in
bash. A line must exit 0, or with the status its comment names (`# exits 2`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from vfn import installed_version

README = REPO / "README.md"
DOCS = REPO / "docs"
RUNS_MARK = "<!-- test: runs -->"
# the user guide's walk: the install, the data, a training run, its evaluation, its MLflow runs, sweeps
WALK = ("quickstart", "data", "training", "checkpoints", "tracking", "sweeps")
EXPECTED_STATUS = re.compile(r"\s#\s*exits (\d+)\b")
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*]")


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


def runnable_commands(page: Path) -> list[str]:
    """The commands of the page's marked bash blocks, in order (continued lines joined)."""
    lines, commands = page.read_text().splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() != RUNS_MARK:
            continue
        assert lines[i + 1] == "```bash", f"{page.name}:{i + 2}: {RUNS_MARK} must sit right above a ```bash block"
        block = "\n".join(lines[i + 2:lines.index("```", i + 2)])
        commands += [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    return commands


def run_command(command: str) -> tuple[int, str]:
    """(exit status, output) of one documented command, run in the current directory."""
    if command.startswith("vfn ") and not SHELL_SYNTAX.search(command.split(" #")[0]):
        from vfn.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                status = main(shlex.split(command, comments=True)[1:])
            except SystemExit as e:  # --version, --help
                status = e.code or 0
        return int(status), out.getvalue()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The reader's directory (a repository root's `experiments/`) and the pages already walked there."""
    root = tmp_path_factory.mktemp("walk")
    (root / "experiments").symlink_to(REPO / "experiments")
    return root, []


@pytest.mark.parametrize("page", WALK)
def test_the_pages_examples_run(page, walk, ray_session, monkeypatch):
    root, walked = walk
    monkeypatch.chdir(root)
    for name in WALK[:WALK.index(page) + 1]:
        if name in walked:
            continue
        commands = runnable_commands(DOCS / f"{name}.md")
        assert commands, f"docs/{name}.md has no block marked {RUNS_MARK}"
        for command in commands:
            expected = int(m.group(1)) if (m := EXPECTED_STATUS.search(command)) else 0
            status, out = run_command(command)
            assert status == expected, f"docs/{name}.md: `{command}` exited {status}:\n{out[-4000:]}"
        walked.append(name)


def test_a_marked_block_runs_and_its_failures_are_caught(tmp_path, monkeypatch):
    """The runner itself: a renamed flag fails, an expected status passes, bash lines run too."""
    page = tmp_path / "page.md"
    page.write_text(f"text\n{RUNS_MARK}\n```bash\nvfn \\\n  --version   # which\n"
                    "vfn models --no-such-flag   # exits 2\necho hi | tr h H\n```\n\n```bash\nnot run\n```\n")
    commands = runnable_commands(page)
    assert commands == ["vfn    --version   # which", "vfn models --no-such-flag   # exits 2", "echo hi | tr h H"]
    monkeypatch.chdir(tmp_path)
    assert run_command(commands[0]) == (0, f"vfn {installed_version()}\n")
    assert run_command(commands[1])[0] == 2
    assert run_command(commands[2]) == (0, "Hi\n")
