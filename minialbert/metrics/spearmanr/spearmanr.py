"""Spearman rank correlation (scipy's `spearmanr`) between predicted and reference scores: a regression metric."""

import datasets
import evaluate
from scipy.stats import spearmanr

_DESCRIPTION = "The Spearman rank-order correlation coefficient between predictions and references, from -1 to +1."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted scores.
    references (`list[float]`): reference scores.
    return_pvalue (`bool`, default False): also return the two-sided p-value.
Returns:
    spearmanr (`float`) and, with return_pvalue, spearmanr_pvalue (`float`).
Examples:
    >>> evaluate.load("minialbert/metrics/spearmanr").compute(predictions=[1, 3, 2], references=[1, 2, 3])
    {'spearmanr': 0.5}
"""
_CITATION = "SciPy 1.0: Fundamental Algorithms for Scientific Computing in Python, Virtanen et al., 2020."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearmanr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        result = spearmanr(references, predictions)
        scores = {"spearmanr": float(result.statistic)}
        return scores | ({"spearmanr_pvalue": float(result.pvalue)} if return_pvalue else {})
