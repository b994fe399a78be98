"""Pearson correlation (scipy's `pearsonr`) between predicted and reference scores: a regression metric."""

import datasets
import evaluate
from scipy.stats import pearsonr

_DESCRIPTION = "The Pearson correlation coefficient between predictions and references, from -1 to +1."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted scores.
    references (`list[float]`): reference scores.
    return_pvalue (`bool`, default False): also return the two-sided p-value.
Returns:
    pearsonr (`float`) and, with return_pvalue, p-value (`float`).
Examples:
    >>> evaluate.load("minialbert/metrics/pearsonr").compute(predictions=[1, 2, 3.5], references=[1, 2, 3])
    {'pearsonr': 0.9933992677987828}
"""
_CITATION = "SciPy 1.0: Fundamental Algorithms for Scientific Computing in Python, Virtanen et al., 2020."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pearsonr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        result = pearsonr(references, predictions)
        scores = {"pearsonr": float(result.statistic)}
        return scores | ({"p-value": float(result.pvalue)} if return_pvalue else {})
