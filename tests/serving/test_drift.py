"""serving/drift.py on the trained iris-svc card: fixed training bins, the thresholds, and no
number below the minimum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from patterns.prediction_monitoring.traffic import sample_rows
from serving import drift
from serving.model import ModelCard, read_card


@pytest.fixture(scope="module")
def card(iris_dir: Path) -> ModelCard:
    return read_card(iris_dir)


@pytest.fixture(scope="module")
def ref(card: ModelCard) -> drift.Reference:
    return drift.Reference.from_card(card)


def window(x: np.ndarray, ids: np.ndarray | None = None, outliers: np.ndarray | None = None
           ) -> drift.Window:  # fmt: skip
    ids = np.zeros(len(x), dtype=np.int64) if ids is None else ids
    return drift.Window(x, ids, outliers, float(len(x)), 600.0)


def test_the_cards_own_training_rows_fall_into_its_decile_counts(
    card: ModelCard, ref: drift.Reference
) -> None:
    """The window is binned as training binned: the card's sample (all training rows for iris)
    reproduces decile_counts exactly (in float64 on the rounded edges it would not)."""
    assert len(ref.sample) == ref.n_rows
    for i, counts in enumerate(card.reference["decile_counts"]):
        assert drift.bin_counts(ref.edges[i], ref.sample[:, i]).tolist() == counts
    assert drift.psi(ref.counts[0], drift.bin_counts(ref.edges[0], ref.sample[:, 0])) == 0.0


def test_an_in_distribution_window_is_ok(card: ModelCard, ref: drift.Reference) -> None:
    x = sample_rows(card, 1000, {}, np.random.default_rng(1))
    ids = np.random.default_rng(2).choice(3, size=1000, p=ref.class_prior / ref.class_prior.sum())
    result = drift.compare(ref, window(x, ids))
    assert [f.name for f in result.features] == card.feature_names
    for f in result.features:
        assert f.psi is not None and f.psi < drift.PSI_WARNING, (f.name, f.psi)
        assert f.ks_pvalue is not None and f.ks_pvalue > drift.KS_PVALUE, (f.name, f.ks_pvalue)
        assert f.mean_shifted is False
    assert result.class_psi is not None and result.class_psi < drift.PSI_WARNING
    assert result.verdict == "ok", result.reasons


def test_petal_length_plus_two_is_critical_on_psi_and_ks(
    card: ModelCard, ref: drift.Reference
) -> None:
    x = sample_rows(card, 500, {2: 2.0}, np.random.default_rng(3))
    result = drift.compare(ref, window(x))
    petal = result.features[2]
    assert petal.name == "petal_length"
    assert petal.psi is not None and petal.psi > drift.PSI_CRITICAL
    assert petal.ks_pvalue is not None and petal.ks_pvalue < drift.KS_PVALUE
    assert petal.verdict == "critical" and result.verdict == "critical"
    assert petal.mean_shifted is True
    others = [f for f in result.features if f.name != "petal_length"]
    assert all(f.psi is not None and f.psi < drift.PSI_WARNING for f in others)


def test_below_the_minimum_no_statistic_is_reported(card: ModelCard, ref: drift.Reference) -> None:
    x = sample_rows(card, drift.MIN_INSTANCES - 1, {2: 2.0}, np.random.default_rng(4))
    flags = np.ones(len(x), dtype=np.bool_)
    result = drift.compare(ref, window(x, outliers=flags))
    assert result.verdict == "insufficient_data"
    assert result.features == [] and result.class_psi is None and result.outlier_rate is None
    assert result.instances == drift.MIN_INSTANCES - 1
    enough = drift.compare(ref, window(np.concatenate([x, x[:1]]), outliers=np.ones(200, bool)))
    assert enough.verdict == "critical" and enough.outlier_rate == 1.0


def test_a_redacted_feature_is_insufficient_alone(card: ModelCard, ref: drift.Reference) -> None:
    x = sample_rows(card, 300, {}, np.random.default_rng(5))
    x[:, 1] = np.nan  # sepal_width logged as null
    result = drift.compare(ref, window(x))
    redacted = result.features[1]
    assert redacted.verdict == "insufficient_data" and redacted.psi is None
    assert redacted.ks_pvalue is None and redacted.mean_deviation is None
    assert all(f.psi is not None for i, f in enumerate(result.features) if i != 1)


def test_empty_bins_are_floored_not_infinite() -> None:
    assert drift.psi(np.array([0.0, 5.0, 5.0]), np.array([0.0, 5.0, 5.0])) == 0.0
    moved = drift.psi(np.array([0.0, 5.0, 5.0]), np.array([1.0, 4.5, 4.5]))
    assert np.isfinite(moved) and moved > drift.PSI_CRITICAL  # 10 % where training had none
    stray = drift.psi(np.array([0.0, 100.0, 100.0]), np.array([1.0, 99.5, 99.5]))
    assert stray < drift.PSI_WARNING  # one instance in 200: noise


def test_one_predicted_class_and_many_outliers_are_critical(
    card: ModelCard, ref: drift.Reference
) -> None:
    x = sample_rows(card, 400, {}, np.random.default_rng(6))
    one_class = drift.compare(ref, window(x, np.full(400, 2, dtype=np.int64)))
    assert one_class.class_psi is not None and one_class.class_psi > drift.PSI_CRITICAL
    assert one_class.verdict == "critical"
    flags = np.arange(400) % 4 == 0  # 25 % outliers
    ids = np.arange(400, dtype=np.int64) % 3
    outliers = drift.compare(ref, window(x, ids, flags))
    assert outliers.outlier_rate == 0.25 and outliers.verdict == "critical"
    assert any("outlier rate" in r for r in outliers.reasons)


def test_the_mean_baseline_uses_the_cards_training_means(ref: drift.Reference) -> None:
    book = np.array([5.84, 3.06, 3.76, 1.20])
    assert np.allclose(ref.means, ref.sample.mean(axis=0))
    assert not np.allclose(ref.means, book, atol=1e-3)  # this model's training split, not iris


def test_a_card_without_reference_is_refused(card: ModelCard) -> None:
    with pytest.raises(drift.ReferenceMissing, match="no usable reference"):
        drift.Reference.from_card(card.model_copy(update={"reference": {}}))
