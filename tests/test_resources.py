"""The small ConfigurableResources: thresholds read when a check runs, the lake built once."""
import pytest

from resources import GenerationThresholds, LakeResource


def test_thresholds_default_then_environment_then_config(monkeypatch):
    monkeypatch.delenv("EVAL_PIPELINE_MAX_FAILED_RATE", raising=False)
    monkeypatch.delenv("EVAL_PIPELINE_MAX_EMPTY_RATE", raising=False)
    assert GenerationThresholds().limits() == (0.05, 0.5)
    monkeypatch.setenv("EVAL_PIPELINE_MAX_FAILED_RATE", "0.1")
    monkeypatch.setenv("EVAL_PIPELINE_MAX_EMPTY_RATE", "0")
    assert GenerationThresholds().limits() == (0.1, 0.0)  # read when asked, not when the module loaded
    assert GenerationThresholds(max_failed_rate=0.2).limits() == (0.2, 0.0)


@pytest.mark.parametrize("raw, message", [
    ("abc", "EVAL_PIPELINE_MAX_FAILED_RATE='abc' is not a number"),
    ("2", "EVAL_PIPELINE_MAX_FAILED_RATE=2.0 must be a fraction from 0 to 1"),
    ("-0.1", "EVAL_PIPELINE_MAX_FAILED_RATE=-0.1 must be a fraction from 0 to 1"),
    ("nan", "EVAL_PIPELINE_MAX_FAILED_RATE=nan must be a fraction from 0 to 1"),
])
def test_a_bad_threshold_is_named(monkeypatch, raw, message):
    monkeypatch.setenv("EVAL_PIPELINE_MAX_FAILED_RATE", raw)
    with pytest.raises(ValueError) as err:
        GenerationThresholds().limits()
    assert str(err.value) == message


def test_a_bad_configured_threshold_is_named():
    with pytest.raises(ValueError, match=r"thresholds.max_empty_rate=1.5 must be a fraction from 0 to 1"):
        GenerationThresholds(max_empty_rate=1.5).limits()


def test_the_lake_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EVAL_PIPELINE_LAKE_URL", raising=False)
    resource = LakeResource()
    first = resource.lake
    assert resource.lake is first
    monkeypatch.setenv("EVAL_PIPELINE_HOME", str(tmp_path / "elsewhere"))
    assert resource.lake is first and str(tmp_path / "home") in first.root
