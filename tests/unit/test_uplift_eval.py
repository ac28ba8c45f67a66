"""Qini / uplift curves, their areas and uplift by decile against examples computed by hand."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest

from models.uplift_eval import (
    auuc,
    decile_figure,
    observed_uplift,
    qini_auc,
    qini_curve,
    qini_figure,
    stratified_uplift,
    uplift_by_decile,
)

matplotlib.use("Agg")

# Ten customers ranked by a score (10 = targeted first), who was treated and their outcome.
SCORE = np.arange(10, 0, -1, dtype=float)
TREATED = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
Y = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 0], dtype=float)
# By hand, after k customers: Y_t - Y_c * N_t / N_c (0 while N_c = 0) ...
HAND_QINI = [0, 1, 1, 2, 2, 2, 3, 3 - 4 / 3, 2, 3 - 5 / 4, 2]
# ... and (Y_t / N_t - Y_c / N_c) * k.
HAND_UPLIFT = [0, 1, 2, 3, 8 / 3, 10 / 3, 4.5, 35 / 12, 4, 63 / 20, 4]


def test_qini_curve_matches_the_hand_computed_example() -> None:
    curve = qini_curve(Y, TREATED, SCORE)
    assert curve["targeted"].tolist() == list(range(11))
    assert np.allclose(curve["qini"], HAND_QINI)
    assert np.allclose(curve["uplift"], HAND_UPLIFT)
    assert np.allclose(curve["random"], np.arange(11) / 10 * 2)  # straight line to the end point (10, 2)


def test_qini_auc_and_auuc_match_the_hand_computed_example() -> None:
    # trapezoids under HAND_QINI: 209/12; random: 10 * 2 / 2 = 10. Perfect ranking (treated responders,
    # then the non-responders, the control responder last): points (0,0) (3,3) (9,3) (10,2), area 25.
    assert qini_auc(Y, TREATED, SCORE) == pytest.approx((209 / 12 - 10) / (25 - 10))
    trapezoids = sum((a + b) / 2 for a, b in zip(HAND_UPLIFT[:-1], HAND_UPLIFT[1:], strict=True))
    assert auuc(Y, TREATED, SCORE) == pytest.approx((trapezoids - 10 * 4 / 2) / 10**2)


def test_ties_in_the_score_count_as_one_step() -> None:
    tied = np.array([2, 2, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)
    curve = qini_curve(Y, TREATED, tied)
    assert curve["targeted"].tolist() == [0, 2, 10]
    assert np.allclose(curve["qini"], [0, 1, 2])


def test_a_perfect_ranking_scores_one_and_the_reverse_below_zero() -> None:
    perfect = np.where(TREATED, Y, -Y)
    assert qini_auc(Y, TREATED, perfect) == pytest.approx(1.0)
    assert qini_auc(Y, TREATED, -perfect) < 0
    assert auuc(Y, TREATED, perfect) > auuc(Y, TREATED, SCORE) > auuc(Y, TREATED, -perfect)


def test_qini_auc_equals_scikit_uplift() -> None:
    from sklift.metrics import qini_auc_score

    rng = np.random.default_rng(3)
    y, t = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    score = np.round(rng.normal(size=500) + 0.5 * y * t, 1)  # ties included
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklift 0.5.1 calls a deprecated scikit-learn helper
        expected = qini_auc_score(y, score, t)
    assert qini_auc(y, t, score) == pytest.approx(expected, rel=1e-12)


def test_propensity_weights_make_campaigns_with_different_shares_count_alike() -> None:
    # campaign A treated half (p = 0.5), campaign B three quarters (p = 0.75)
    treated = np.array([1, 1, 0, 0, 1, 1, 1, 0], dtype=bool)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    p = np.array([0.5] * 4 + [0.75] * 4)
    # treated: weights 2, 2, 4/3 x 3 -> (2 + 4) / 8 = 0.75; control: weights 2, 2, 4 -> 4 / 8 = 0.5
    assert observed_uplift(y, treated, p)[0] == pytest.approx(0.25)
    assert observed_uplift(y, treated)[0] == pytest.approx(4 / 5 - 1 / 3)  # unweighted
    assert qini_curve(y, treated, np.arange(8.0), p)["qini"].iloc[-1] == pytest.approx(8 * 0.25)


def test_uplift_by_decile_on_a_constructed_example() -> None:
    score = np.r_[np.full(10, 0.5), np.full(10, -0.1)]
    treated = np.tile(np.r_[np.ones(5), np.zeros(5)].astype(bool), 2)
    y = np.r_[[1, 1, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 1, 0, 0]].astype(float)
    table = uplift_by_decile(y, treated, score, bins=2, confidence=0.90)
    assert table["decile"].tolist() == [1, 2]
    assert table["n_treated"].tolist() == [5, 5] and table["n_control"].tolist() == [5, 5]
    assert np.allclose(table["predicted"], [0.5, -0.1])
    assert np.allclose(table["observed"], [0.8 - 0.2, 0.2 - 0.4])
    # sample variances / n: bin 1 0.2/5 + 0.2/5; bin 2 0.2/5 + 0.3/5; z(0.95) = 1.644854
    half = 1.644854 * np.sqrt([0.08, 0.10])
    assert np.allclose(table["high"] - table["observed"], half, atol=1e-6)
    assert np.allclose(table["observed"] - table["low"], half, atol=1e-6)


def test_bad_propensities_are_refused() -> None:
    with pytest.raises(ValueError, match=r"propensity must be in \(0, 1\]"):
        qini_auc(Y, TREATED, SCORE, np.r_[0.0, np.full(9, 0.5)])
    with pytest.raises(ValueError, match="below 1 for control rows"):
        qini_auc(Y, TREATED, SCORE, np.ones(10))


def test_figures_show_the_model_against_random_and_observed_against_predicted() -> None:
    import matplotlib.pyplot as plt

    qini = qini_figure(qini_curve(Y, TREATED, SCORE), "Qini")
    assert [line.get_label() for line in qini.axes[0].get_lines()][:2] == ["model", "random"]
    deciles = decile_figure(uplift_by_decile(Y, TREATED, SCORE, bins=2), "deciles")
    assert {"observed (held-out)", "predicted"} <= set(deciles.axes[0].get_legend_handles_labels()[1])
    plt.close("all")


def test_the_stratified_average_reads_each_campaign_at_its_own_share_and_precision() -> None:
    """Three campaigns treating 50%, 70% and 90%, with their own baselines and one true effect of 2: both
    estimators are unbiased over repeats, the stratified one has the narrower interval and covers the truth."""
    rng = np.random.default_rng(5)
    shares, baselines = (0.5, 0.7, 0.9), (10.0, 20.0, 30.0)
    estimates, hajek, covered, narrower = [], [], 0, 0
    for _ in range(200):
        strata = np.repeat(np.arange(3), 600)
        p = np.asarray(shares)[strata]
        t = rng.uniform(size=strata.size) < p
        y = np.asarray(baselines)[strata] + 2.0 * t + rng.normal(0, 5, strata.size)
        effect, low, high = stratified_uplift(y, t, strata, 0.90)
        h_effect, h_low, h_high = observed_uplift(y, t, p, 0.90)
        estimates.append(effect)
        hajek.append(h_effect)
        covered += low <= 2.0 <= high
        narrower += (high - low) < (h_high - h_low)
    assert abs(np.mean(estimates) - 2.0) < 0.05 and abs(np.mean(hajek) - 2.0) < 0.1
    assert 0.85 <= covered / 200 <= 0.95
    assert narrower == 200 and np.std(estimates) < np.std(hajek)


def test_the_stratified_average_leaves_out_a_campaign_without_both_arms() -> None:
    y = np.array([1.0, 3.0, 0.0, 2.0, 50.0, 60.0])
    t = np.array([True, True, False, False, True, True])
    strata = np.array(["a", "a", "a", "a", "b", "b"])  # b has no controls
    effect, low, high = stratified_uplift(y, t, strata)
    assert effect == pytest.approx(1.0) and low < 1.0 < high
    # no campaign with both arms: the plain difference of means (NaN without two rows in an arm)
    assert np.isnan(stratified_uplift(y[4:], t[4:], strata[4:])[0])
