"""Run the common tests only against the transformers version they were fetched for."""

from importlib.metadata import version
from pathlib import Path

import pytest

FETCHED_VERSION = Path(__file__).with_name("FETCHED_VERSION")
# Marks transformers' own conftest registers (its sdist ships the common files without it).
TRANSFORMERS_MARKS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "torch_export_test",
)


def pytest_configure(config: pytest.Config) -> None:
    for mark in TRANSFORMERS_MARKS:
        config.addinivalue_line("markers", f"{mark}: a transformers common-test mark")
    installed = version("transformers")
    if not FETCHED_VERSION.is_file():
        raise pytest.UsageError(
            f"transformers' common tests are not fetched: run `python tests/transformers_common/fetch.py` "
            f"(it downloads the sdist of the installed transformers {installed})."
        )
    fetched = FETCHED_VERSION.read_text().strip()
    if fetched != installed:
        raise pytest.UsageError(
            f"the common tests in tests/transformers_common are transformers {fetched}'s, the installed one is "
            f"{installed}: rerun `python tests/transformers_common/fetch.py`."
        )
