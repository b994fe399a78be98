"""GLUE's metric for each task, as the Hub's `glue` metric defines it, computed with scikit-learn and scipy.

cola: Matthews correlation; stsb: Pearson and Spearman correlation; mrpc and qqp: accuracy and F1; every other
task (sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, hans, ax): accuracy.
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_DESCRIPTION = "GLUE (Wang et al., 2019) metric for the task named by the configuration."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (scores for stsb).
    references: true labels (scores for stsb).
Returns:
    cola: matthews_correlation; stsb: pearson, spearmanr; mrpc, qqp: accuracy, f1; other tasks: accuracy.
Examples:
    >>> evaluate.load("minialbert/metrics/glue", "mrpc").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
"""
_CITATION = "Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding, 2019."
TASKS = (
    "sst2",
    "mnli",
    "mnli_mismatched",
    "mnli_matched",
    "cola",
    "stsb",
    "mrpc",
    "qqp",
    "qnli",
    "rte",
    "wnli",
    "hans",
)
TASKS += ("ax",)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"Unknown GLUE task {self.config_name!r}; use one of {', '.join(TASKS)}.")
        value = datasets.Value("float32" if self.config_name == "stsb" else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
            format="numpy",
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {
                "pearson": float(pearsonr(references, predictions).statistic),
                "spearmanr": float(spearmanr(references, predictions).statistic),
            }
        scores = {"accuracy": float(accuracy_score(references, predictions))}
        if self.config_name in ("mrpc", "qqp"):
            scores["f1"] = float(f1_score(references, predictions))
        return scores
