"""Every Python snippet of the README runs as a user would paste it, each in a fresh process, in order, in one
working folder that holds `outputs/student` (the folder the quick start writes). Hub ids of teachers become the
bundled teacher's folder; a snippet whose first line is `# Online: ...` needs the Hub or a download and only has
its imports checked. Snippets that do not import minialbert run with it unimportable, as on a machine without it.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minialbert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.sentence_embeddings import read_sentence_modules, save_sentence_modules

README = Path(__file__).parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
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
    assert sum(snippet.startswith(ONLINE) for snippet in SNIPPETS) == 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, workdir, teacher_path):
    snippet = SNIPPETS[index]
    if snippet.startswith(ONLINE):
        code = imports_only(snippet)
    else:
        code = snippet.replace('"google-bert/bert-base-uncased"', repr(teacher_path))
    if "minialbert" not in imports_only(snippet):
        code = f'import sys\nsys.modules["minialbert"] = None\n{code}'
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, f"README snippet {index}:\n{snippet}\n{result.stderr[-3000:]}"
