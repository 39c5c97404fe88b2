"""The README's tour runs as written (issue 13): its cheap commands, on the shared HH-RLHF file, in a shell, from a
folder laid out like a checkout (../shared beside it), so the README cannot drift from what curate does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SHARED_HH

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SKIP = {  # what the tour shows but a test cannot run here, and why
    "hf:": "needs the Hugging Face Hub",
    "--model AnnaWegmann": "needs the Hugging Face Hub",
    "curate generate ": "samples SmolLM2 for every prompt (minutes); the shared generations are imported instead",
}


def block_after(heading: str) -> str:
    """The first ```bash block after a heading."""
    rest = README[README.index(heading):]
    return re.search(r"```bash\n(.*?)```", rest, re.S).group(1)


def commands(block: str) -> list[str]:
    """The command lines of a block: continuations joined, comments dropped."""
    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith("curate "):
            out.append(line)
    return out


def runnable(cmds: list[str]) -> list[str]:
    return [c for c in cmds if not any(k in c for k in SKIP)]


TOUR = commands(block_after("## A short tour"))
GENERATIONS = commands(block_after("## Generations, embeddings, similarities and neighbours"))


def test_the_tour_has_what_this_test_runs():
    assert len(runnable(TOUR)) >= 8 and len(runnable(GENERATIONS)) >= 6
    assert [c for c in TOUR + GENERATIONS if c not in runnable(TOUR + GENERATIONS)]  # some are skipped, with reasons


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    if not SHARED_HH.is_file():
        pytest.skip(f"the shared HH-RLHF file is not at {SHARED_HH} (clone the repo with ../shared beside it)")
    base = tmp_path_factory.mktemp("readme")
    (base / "main").mkdir()
    (base / "shared").symlink_to(SHARED_HH.parents[3])  # ../shared, as beside a checkout
    return base / "main"


def sh(cwd: Path, command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    env.pop("CURATE_WORKSPACE", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # embeds the shared file's responses and generations once (about half a minute)
def test_the_readme_tour_runs_as_written(checkout):
    first, rest = TOUR[:TOUR.index(next(c for c in TOUR if "curate generate " in c))], None
    rest = TOUR[len(first):]
    done = []
    for command in runnable(first) + runnable(GENERATIONS) + runnable(rest):
        r = sh(checkout, command)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
        assert "Traceback" not in r.stderr, command
        done.append((command, r))

    ingest = next(r for c, r in done if c.startswith("curate ingest ../shared"))
    shown = re.search(r"`curate ingest` reports:\n\n```\n(.*?)```", README, re.S).group(1)
    assert ingest.stderr.startswith(shown)  # what the README says ingest prints
    assert (checkout / "datasets_out" / "frft-split-even-it1" / "README.md").is_file()

    example = re.search(r"\$ (curate neighbors [^\n]*)\n(.*?)```", README, re.S)
    r = sh(checkout, example.group(1))
    assert r.returncode == 0, r.stderr
    assert rows(example.group(2)) == rows(r.stdout) != []  # ranks and texts as the README shows them
    assert example.group(2).strip().splitlines()[-1].split(" (")[0] == r.stderr.strip().splitlines()[-1].split(" (")[0]


def rows(table: str) -> list[tuple[str, str]]:
    """(rank, text) of each row of a printed neighbours table (similarities may differ in the last digit
    between CPUs, so they are left out)."""
    out = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3 and cells[1].isdigit():
            out.append((cells[1], cells[-2]))
    return out
