"""Corpus metrics equal lm-eval's aggregation functions; the vectorised bootstrap agrees with theory."""
import random

import numpy as np
import pytest
from lm_eval.api import metrics as lm

from eval_pipeline.results.bootstrap import bootstrap_stderr
from eval_pipeline.results.metrics import summarise_corpus
from eval_pipeline.scoring.corpus import CORPUS_METRICS, corpus_value, label_stats, text_stats

WORDS = "the cat sat on a mat while dogs ran across green fields under grey skies".split()


def _sentences(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.mark.parametrize("name,aggregate", [("bleu", lm.bleu), ("chrf", lm.chrf), ("chrf++", lm.chrfpp),
                                            ("ter", lm.ter)])
def test_text_corpus_metrics_equal_lm_eval(name, aggregate):
    rng = random.Random(7)
    refs = _sentences(rng, 200)
    preds = [r if rng.random() < 0.3 else " ".join(rng.sample(r.split(), len(r.split()))) + " extra"
             for r in refs]
    scores, stats = text_stats(name, refs, preds)
    expected = aggregate(list(zip(refs, preds)))
    assert corpus_value(name, stats) == pytest.approx(expected, abs=1e-9)
    assert len(scores) == 200 and scores[0] == pytest.approx(corpus_value(name, stats[:1]), abs=1e-12)


@pytest.mark.parametrize("name,aggregate,labels", [("f1", lm.f1_score, 2), ("mcc", lm.matthews_corrcoef, 2),
                                                   ("mcc", lm.matthews_corrcoef, 4)])
def test_label_corpus_metrics_equal_lm_eval(name, aggregate, labels):
    rng = random.Random(labels)
    golds = [rng.randrange(labels) for _ in range(500)]
    preds = [g if rng.random() < 0.7 else rng.randrange(labels) for g in golds]
    scores, stats = label_stats(name, golds, preds, labels)
    assert corpus_value(name, stats) == pytest.approx(aggregate(list(zip(golds, preds))), abs=1e-12)
    assert scores == [float(g == p) for g, p in zip(golds, preds)]


def test_f1_needs_two_choices():
    with pytest.raises(ValueError, match="2 choices"):
        label_stats("f1", [0, 1, 2], [0, 1, 1], 3)


def test_bootstrap_of_a_mean_matches_the_closed_form():
    """For a mean the bootstrap stderr is sd (ddof 0) / sqrt(n); both resampling paths must find it."""
    rng = np.random.default_rng(3)
    continuous = rng.normal(size=4000)  # many distinct rows: gathered indices on threads
    binary = (rng.random(4000) < 0.3).astype(float)  # two distinct rows: multinomial counts
    mean_of = lambda sums: sums[:, 0] / 4000  # noqa: E731
    for x in (continuous, binary):
        expected = x.std() / np.sqrt(len(x))
        assert bootstrap_stderr(x, mean_of, 20_000) == pytest.approx(expected, rel=0.03)


def test_bootstrap_is_reproducible_and_seeded():
    x = np.random.default_rng(1).normal(size=500)
    mean_of = lambda sums: sums[:, 0] / 500  # noqa: E731
    assert bootstrap_stderr(x, mean_of, 2000, seed=5) == bootstrap_stderr(x, mean_of, 2000, seed=5)
    assert bootstrap_stderr(x, mean_of, 2000, seed=5) != bootstrap_stderr(x, mean_of, 2000, seed=6)


def test_f1_bootstrap_agrees_with_lm_eval_bootstrap(monkeypatch):
    """Our f1 stderr (multinomial over confusion cells) and lm-eval's (Python resampling) estimate the
    same quantity: they agree within the Monte Carlo error of 2,000 resamples."""
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    rng = random.Random(11)
    golds = [rng.randrange(2) for _ in range(300)]
    preds = [g if rng.random() < 0.75 else 1 - g for g in golds]
    _, stats = label_stats("f1", golds, preds, 2)
    ours = summarise_corpus("f1", stats, 2000)
    random.seed(0)
    theirs = lm.bootstrap_stderr(lm.f1_score, list(zip(golds, preds)), iters=2000)
    assert ours["stderr"] == pytest.approx(theirs, rel=0.12)
    assert ours["ci_low"] <= ours["value"] <= ours["ci_high"] <= CORPUS_METRICS["f1"].high
