"""Fetch transformers' common model tests for the installed transformers version.

`python tests/transformers_common/fetch.py` downloads the source distribution of exactly the installed version
from PyPI and unpacks its `tests/test_modeling_common.py` and `tests/test_configuration_common.py` next to this
script (they are not copied into the repository: `.gitignore` lists them), with a `FETCHED_VERSION` file that the
suite's conftest compares with the installed version before it runs.
"""

import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).parent
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py")
VERSION_FILE = HERE / "FETCHED_VERSION"


def fetch(transformers_version: str) -> None:
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            + ["--dest", download, f"transformers=={transformers_version}"],
            check=True,
        )
        (sdist,) = Path(download).glob("transformers-*.tar.gz")
        root = f"transformers-{transformers_version}"
        with tarfile.open(sdist) as archive:
            names = set(archive.getnames())
            if f"{root}/PKG-INFO" not in names:
                raise SystemExit(f"{sdist.name} is not the sdist of transformers {transformers_version}.")
            for name in COMMON_FILES:
                member = f"{root}/tests/{name}"
                if member not in names:
                    raise SystemExit(f"{sdist.name} has no {member}: this transformers ships no common tests.")
                (HERE / name).write_bytes(archive.extractfile(member).read())
    VERSION_FILE.write_text(transformers_version + "\n")
    print(f"fetched {', '.join(COMMON_FILES)} of transformers {transformers_version} into {HERE}")


if __name__ == "__main__":
    fetch(version("transformers"))
