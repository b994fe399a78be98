"""Entity-level precision, recall and F1 for sequence labelling (seqeval), as the Hub's `seqeval` metric reports."""

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

_DESCRIPTION = "CoNLL-style entity-level scores: an entity counts only when its type and its whole span are right."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): predicted tags per sentence (IOB1, IOB2, IOE1, IOE2, IOBES or BILOU).
    references (`list[list[str]]`): true tags per sentence.
    suffix (`bool`, default False): tags carry their prefix as a suffix (PER-B).
    scheme (`str`, optional): "IOB1", "IOB2", "IOE1", "IOE2", "IOBES" or "BILOU" for strict matching.
    mode (`str`, optional): "strict" for strict matching under `scheme`.
    sample_weight (optional), zero_division (default "warn"): as in seqeval.
Returns:
    one dict per entity type (precision, recall, f1, number), and overall_precision, overall_recall,
    overall_f1, overall_accuracy (token level).
Examples:
    >>> metric = evaluate.load("minialbert/metrics/seqeval")
    >>> metric.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["overall_f1"]
    1.0
"""
_CITATION = "seqeval: A Python framework for sequence labeling evaluation, Hiroki Nakayama, 2018."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Seqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                }
            ),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(
        self, predictions, references, suffix=False, scheme=None, mode=None, sample_weight=None, zero_division="warn"
    ):
        if scheme is not None:
            import seqeval.scheme

            scheme = getattr(seqeval.scheme, scheme)
        report = classification_report(
            y_true=references,
            y_pred=predictions,
            suffix=suffix,
            output_dict=True,
            scheme=scheme,
            mode=mode,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        report.pop("macro avg")
        report.pop("weighted avg")
        overall = report.pop("micro avg")
        scores = {
            entity: {
                "precision": float(score["precision"]),
                "recall": float(score["recall"]),
                "f1": float(score["f1-score"]),
                "number": int(score["support"]),
            }
            for entity, score in report.items()
        }
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
