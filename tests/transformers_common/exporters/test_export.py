"""Stand-in for transformers' `tests/exporters/test_export.py`, which the sdist does not ship.

Its `ExportTesterMixin` adds the `torch.export` tests of transformers' own export pipeline; this project tests
`torch.export` of the uploaded code itself (`tests/remote_code_clients.py`) and its ONNX export
(`tests/test_export.py`).
"""


class ExportTesterMixin:
    pass
