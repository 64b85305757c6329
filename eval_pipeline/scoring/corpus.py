"""Metrics whose aggregate is not a mean of per-sample scores (lm-eval's corpus aggregations).

Each is computed from per-sample sufficient statistics whose column sums determine the aggregate:
n-gram matches for BLEU/chrF (sacrebleu's own segment statistics), edits for TER, a confusion-matrix
cell for f1 and mcc, (loglikelihood, 1) for perplexity. Grades keep those statistics per sample, so the
aggregate equals lm-eval's corpus function and the bootstrap only resamples sums (bootstrap.py)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Callable, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sacrebleu.metrics.base import Metric

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus metric: how its aggregate follows from per-sample statistics' column sums, its range, and how
    its stderr is bootstrapped (lm_eval/api/metrics.py's aggregations of the same names)."""

    name: str
    kind: str  # "text": items are (reference, prediction); "label": (gold index, predicted index);
    # "loglikelihood": (ll, 1); "weighted": lm-eval's (loglikelihood, words | bytes) pairs
    value_of_sums: Callable[[FloatArray], FloatArray]  # (B, k) column sums -> (B,) aggregate values
    low: float | None  # the aggregate's range, for the checks
    high: float | None
    max_iters: int | None = None  # sacrebleu scores each resample in Python (~20 us): capped, as lm-eval does
    bootstrap: bool = True  # False where lm-eval reports no stderr (its stderr_for_metric gives None)


@cache
def _sacrebleu(name: str) -> Metric:
    import sacrebleu  # deferred: only corpus metrics need sacrebleu

    makers: dict[str, Callable[[], Metric]] = {
        "bleu": lambda: sacrebleu.BLEU(), "chrf": lambda: sacrebleu.CHRF(),
        "chrf++": lambda: sacrebleu.CHRF(word_order=2), "ter": lambda: sacrebleu.TER()}
    return makers[name]()


def _sacrebleu_values(name: str) -> Callable[[FloatArray], FloatArray]:
    def values(sums: FloatArray) -> FloatArray:
        metric = _sacrebleu(name)
        rows = np.rint(sums).astype(np.int64).tolist()  # sums of integer counts: exact
        return np.array([metric._compute_score_from_stats(r).score for r in rows], dtype=float)
    return values


def _f1(sums: FloatArray) -> FloatArray:
    # cells of the binary confusion matrix (gold, pred): 00, 01, 10, 11; sklearn's binary f1, 0 when undefined
    fp, fn, tp = sums[:, 1], sums[:, 2], sums[:, 3]
    denominator = 2 * tp + fp + fn
    # numpy's stubs type a ufunc called with `out` as Any; it returns `out`
    return cast(FloatArray, np.divide(2 * tp, denominator, out=np.zeros_like(tp, dtype=float), where=denominator > 0))


def _mcc(sums: FloatArray) -> FloatArray:
    """sklearn's matthews_corrcoef from flattened K x K confusion matrices; 0 when undefined."""
    k = int(round(np.sqrt(sums.shape[1])))
    c = sums.reshape(-1, k, k)
    t_sum, p_sum = c.sum(axis=2), c.sum(axis=1)
    n, correct = c.sum(axis=(1, 2)), np.trace(c, axis1=1, axis2=2)
    cov_tp = correct * n - (t_sum * p_sum).sum(axis=1)
    cov_pp = n * n - (p_sum * p_sum).sum(axis=1)
    cov_tt = n * n - (t_sum * t_sum).sum(axis=1)
    denominator = np.sqrt(cov_tt * cov_pp)
    return cast(FloatArray,  # as in _f1
                np.divide(cov_tp, denominator, out=np.zeros_like(cov_tp, dtype=float), where=denominator > 0))


def _perplexity(sums: FloatArray) -> FloatArray:
    return np.exp(-sums[:, 0] / sums[:, 1])


def _bits_per_byte(sums: FloatArray) -> FloatArray:
    """lm-eval's bits_per_byte aggregation: -weighted mean loglikelihood / ln 2."""
    return cast(FloatArray, -sums[:, 0] / sums[:, 1] / np.log(2))  # numpy's stubs type np.log(2) as Any


CORPUS_METRICS = {
    "bleu": CorpusMetric("bleu", "text", _sacrebleu_values("bleu"), 0.0, 100.0, 1000),
    "chrf": CorpusMetric("chrf", "text", _sacrebleu_values("chrf"), 0.0, 100.0, 1000),
    "chrf++": CorpusMetric("chrf++", "text", _sacrebleu_values("chrf++"), 0.0, 100.0, 1000),
    "ter": CorpusMetric("ter", "text", _sacrebleu_values("ter"), 0.0, None, 1000),
    "f1": CorpusMetric("f1", "label", _f1, 0.0, 1.0),
    "mcc": CorpusMetric("mcc", "label", _mcc, -1.0, 1.0),
    "perplexity": CorpusMetric("perplexity", "loglikelihood", _perplexity, 1.0, None),
    # lm-eval's weighted_perplexity and bits_per_byte (loglikelihood_rolling); it gives them no stderr
    "word_perplexity": CorpusMetric("word_perplexity", "weighted", _perplexity, 1.0, None, bootstrap=False),
    "byte_perplexity": CorpusMetric("byte_perplexity", "weighted", _perplexity, 1.0, None, bootstrap=False),
    "bits_per_byte": CorpusMetric("bits_per_byte", "weighted", _bits_per_byte, 0.0, None, bootstrap=False),
}


def text_stats(name: str, references: list[str], predictions: list[str]) -> tuple[list[float], FloatArray]:
    """Per-sample (score of the sample alone, sacrebleu segment statistics: an (n, k) array), one reference per
    sample as lm-eval's _sacreformat passes them; `name` is bleu, chrf, chrf++ or ter (KeyError otherwise)."""
    metric = _sacrebleu(name)
    stats = np.array(metric._extract_corpus_statistics(predictions, [list(references)]), dtype=float)
    return CORPUS_METRICS[name].value_of_sums(stats).tolist(), stats


def label_stats(name: str, golds: list[int], preds: list[int], n_labels: int) -> tuple[list[float], FloatArray]:
    """Per-sample (1.0 when the prediction is the gold, one-hot confusion cell gold x pred: an (n, n_labels**2)
    array). Raises ValueError for f1 with other than 2 labels (lm-eval's f1 is sklearn's binary f1)."""
    if name == "f1" and n_labels != 2:
        raise ValueError(f"f1 is sklearn's binary f1: it needs 2 choices, the task has {n_labels}")
    stats = np.zeros((len(golds), n_labels * n_labels))
    stats[np.arange(len(golds)), np.asarray(golds) * n_labels + np.asarray(preds)] = 1.0
    return [float(g == p) for g, p in zip(golds, preds)], stats


def corpus_value(name: str, stats: FloatArray) -> float:
    """The corpus metric `name` (a key of CORPUS_METRICS) of the samples whose statistics are the rows of
    `stats`: lm-eval's aggregate of those samples."""
    return float(CORPUS_METRICS[name].value_of_sums(stats.sum(axis=0, keepdims=True))[0])
