"""F1: the harmonic mean of precision and recall (scikit-learn's `f1_score`), binary or averaged over classes."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score

_DESCRIPTION = "F1 = 2 * (precision * recall) / (precision + recall), computed with sklearn.metrics.f1_score."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted labels.
    references (`list[int]`): true labels.
    average (`str`, default "binary"): "binary", "micro", "macro", "weighted", or None for one score per class.
    labels (`list[int]`, optional), pos_label (default 1), sample_weight (optional): as in scikit-learn.
Returns:
    f1 (`float`, or a list of floats with average=None).
Examples:
    >>> evaluate.load("minialbert/metrics/f1").compute(predictions=[0, 1, 2], references=[0, 2, 2], average="macro")
    {'f1': 0.5555555555555555}
"""
_CITATION = "scikit-learn: Machine Learning in Python, Pedregosa et al., JMLR 12, 2011."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None):
        score = f1_score(
            references, predictions, labels=labels, pos_label=pos_label, average=average, sample_weight=sample_weight
        )
        return {"f1": float(score) if np.ndim(score) == 0 else score.tolist()}
