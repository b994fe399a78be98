"""`evaluate` metric modules shipped with minialbert, built on scikit-learn, scipy and seqeval.

The Hub's metric scripts cannot be downloaded offline; these load by path and need no network:

```python
>>> from minialbert.metrics import load_metric
>>> load_metric("glue", "mrpc").compute(predictions=[0, 1], references=[0, 1])
{'accuracy': 1.0, 'f1': 1.0}
```
"""

from pathlib import Path

import evaluate

from ..errors import BadInputError

METRICS_DIR = Path(__file__).parent
METRICS = tuple(sorted(path.name for path in METRICS_DIR.iterdir() if (path / f"{path.name}.py").is_file()))


def load_metric(name: str, config_name: str | None = None, **kwargs) -> evaluate.EvaluationModule:
    """`evaluate.load` for one of the shipped modules (`METRICS`), by path."""
    if name not in METRICS:
        raise BadInputError(f"Unknown metric {name!r}; minialbert ships {', '.join(METRICS)}.")
    return evaluate.load(str(METRICS_DIR / name), config_name, **kwargs)
