"""SER metrics as a local `evaluate` module: UA, WA, macro-F1, per-class recall, confusion matrix.

Load it offline with ``evaluate.load("<repo>/after_hf/metrics/ser_metrics")`` (or
``after_hf.metrics.load_ser_metrics()``). The numbers come from scikit-learn:

* UA (unweighted accuracy) = mean per-class recall over the classes present in the references
  (= ``sklearn.metrics.balanced_accuracy_score``); the headline SER number, insensitive to class imbalance.
* WA (weighted accuracy) = plain accuracy (``accuracy_score``).
* macro-F1 over all ``num_classes`` classes (``f1_score(average="macro")``; an absent, never-predicted class scores 0).
* per-class recall (``recall_score(average=None)``; NaN for a class with no reference sample).
* confusion matrix (rows = reference, columns = prediction), ``num_classes`` x ``num_classes``.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class indices.
    references (list of int): reference class indices.
    num_classes (int, optional): size of the label set (default: 1 + the largest index seen). Pass it so that
        classes absent from a small evaluation set still get a row/column in the confusion matrix.
Returns:
    ua, wa, macro_f1 (float), per_class_recall (list of float, NaN where a class has no reference),
    confusion_matrix (list of list of int), num_samples (int).
Example:
    >>> m = evaluate.load("after_hf/metrics/ser_metrics")
    >>> m.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_classes=2)["ua"]
    0.75
"""
_CITATION = """@article{balanced_accuracy, title={The balanced accuracy and its posterior distribution},
author={Brodersen, K. H. and Ong, C. S. and Stephan, K. E. and Buhmann, J. M.}, journal={ICPR}, year={2010}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SerMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#balanced-accuracy-score"],
        )

    def _compute(self, predictions, references, num_classes=None):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("ser_metrics: no predictions to score (empty evaluation set).")
        seen = int(max(predictions.max(), references.max())) + 1
        num_classes = seen if num_classes is None else int(num_classes)
        if seen > num_classes:
            raise ValueError(f"ser_metrics: class index {seen - 1} >= num_classes={num_classes}.")
        labels = np.arange(num_classes)
        recall = recall_score(references, predictions, labels=labels, average=None, zero_division=np.nan)
        present = np.isin(labels, references)
        return {
            "ua": float(np.mean(recall[present])),  # = balanced_accuracy_score(references, predictions)
            "wa": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0.0)),
            "per_class_recall": [float(r) for r in recall],
            "confusion_matrix": confusion_matrix(references, predictions, labels=labels).tolist(),
            "num_samples": int(predictions.size),
        }
