"""Every Python snippet of the README and of the pages in docs/, and every `minialbert export` / `bench` command
they show, runs as a user would paste it, each in a fresh process, in order (the README, then the pages as its map
lists them), in one working folder that holds `outputs/student` (the folder the set-up writes). Hub ids of teachers
become the bundled teacher's folder; a snippet whose first line is `# Online: ...` needs the Hub or a download and
only has its imports checked. Snippets that do not import minialbert run with it unimportable, as on a machine
without it. Every relative link resolves, to a file and, with a `#`, to one of its headings; the README stays a
front door.
"""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from minialbert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.sentence_embeddings import read_sentence_modules, save_sentence_modules

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
# The README, then the docs pages in the order of its map.
DOCS_MAP = README.read_text().partition("## The documentation")[2]
PAGES = [README] + [ROOT / path for path in re.findall(r"\]\((docs/[\w-]+\.md)\)", DOCS_MAP)]
# The commands of the export stack, run like the snippets where the pages show them in `bash` blocks.
COMMANDS = ("minialbert export ", "minialbert bench ")


def runnable(page: Path) -> list[str]:
    """The page's Python snippets and its export commands (one line each), in the page's order."""
    found = []
    for kind, block in re.findall(r"```(python|bash)\n(.*?)```", page.read_text(), re.S):
        found += [block] if kind == "python" else [line for line in block.splitlines() if line.startswith(COMMANDS)]
    return found


SNIPPETS = [snippet for page in PAGES for snippet in runnable(page)]
ONLINE = "# Online:"


def imports_only(snippet: str) -> str:
    tree = ast.parse(snippet)
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, teacher_path):
    work = tmp_path_factory.mktemp("readme")
    student = convert_and_save(teacher_path, work / "outputs" / "student", ConversionArguments())
    save_sentence_modules(read_sentence_modules(teacher_path), student, hidden_size=384)
    return work


def test_the_readme_has_snippets_and_marks_the_online_ones():
    assert len(SNIPPETS) >= 6
    assert sum(snippet.startswith(ONLINE) for snippet in SNIPPETS) == 4  # the README's push and three in docs/
    assert set(PAGES) == {README, *(ROOT / "docs").glob("*.md")}, "a docs page the README's map does not list"


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 250


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or page != README
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} names no file"
        if anchor:
            assert anchor in headings(path), f"{page.name}: {link} names no heading of {path.name}"


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, workdir, teacher_path):
    snippet = SNIPPETS[index]
    if snippet.startswith(COMMANDS):  # the installed command, as a user types it
        result = subprocess.run(shlex.split(snippet), capture_output=True, text=True, cwd=workdir)
        assert result.returncode == 0, f"README command {index}:\n{snippet}\n{result.stderr[-3000:]}"
        return
    if snippet.startswith(ONLINE):
        code = imports_only(snippet)
    else:
        code = snippet.replace('"google-bert/bert-base-uncased"', repr(teacher_path))
    if "minialbert" not in imports_only(snippet):
        code = f'import sys\nsys.modules["minialbert"] = None\n{code}'
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, f"README snippet {index}:\n{snippet}\n{result.stderr[-3000:]}"
