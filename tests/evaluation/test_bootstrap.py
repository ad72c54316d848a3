"""Bootstrap intervals: determinism, degenerate inputs and input checks."""

import numpy as np
import pytest

from recsys_peft.evaluation.bootstrap import bootstrap_ci, paired_bootstrap


def test_bootstrap_ci_deterministic_for_seed():
    values = np.random.default_rng(1).random(200)

    first = bootstrap_ci(values, n_resamples=500, seed=7)
    second = bootstrap_ci(values, n_resamples=500, seed=7)
    other_seed = bootstrap_ci(values, n_resamples=500, seed=8)

    assert first == second
    assert first[1:] != other_seed[1:]


def test_bootstrap_ci_interval_contains_mean():
    values = np.random.default_rng(2).random(300)

    mean, low, high = bootstrap_ci(values)

    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # The standard error of the mean of U(0, 1) with 300 users is about 0.017, so a 95%
    # interval is roughly 0.065 wide.
    assert 0.03 < high - low < 0.12


def test_bootstrap_ci_constant_values_zero_width():
    mean, low, high = bootstrap_ci(np.full(50, 0.25))

    assert mean == 0.25
    assert low == 0.25
    assert high == 0.25


def test_bootstrap_ci_many_users_split_into_blocks():
    # 100_000 users x 100 resamples exceeds one block of sampled indices.
    values = np.random.default_rng(3).random(100_000)

    mean, low, high = bootstrap_ci(values, n_resamples=100)

    assert low < mean < high


def test_bootstrap_ci_rejects_empty_and_bad_settings():
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        bootstrap_ci(np.ones(3), confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples must be a positive integer"):
        bootstrap_ci(np.ones(3), n_resamples=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_ci(np.array([0.5, np.nan]))


def test_paired_bootstrap_identical_arrays_zero_diff():
    values = np.random.default_rng(4).random(100)

    result = paired_bootstrap(values, values.copy())

    assert result["mean_diff"] == 0.0
    assert result["low"] == 0.0
    assert result["high"] == 0.0
    assert result["p_b_not_better"] == 1.0


def test_paired_bootstrap_sign_is_b_minus_a():
    a = np.random.default_rng(5).random(200)
    b = a + 0.1

    result = paired_bootstrap(a, b, seed=3)

    assert result["mean_diff"] == pytest.approx(0.1)
    assert result["low"] == pytest.approx(0.1)
    assert result["high"] == pytest.approx(0.1)
    assert result["p_b_not_better"] == 0.0

    reversed_result = paired_bootstrap(b, a, seed=3)

    assert reversed_result["mean_diff"] == pytest.approx(-0.1)
    assert reversed_result["p_b_not_better"] == 1.0


def test_paired_bootstrap_deterministic_for_seed():
    rng = np.random.default_rng(6)
    a = rng.random(150)
    b = rng.random(150)

    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)


def test_paired_bootstrap_rejects_length_mismatch():
    with pytest.raises(ValueError, match="got 3 values in a and 4 values in b"):
        paired_bootstrap(np.ones(3), np.ones(4))


def test_paired_bootstrap_rejects_empty():
    with pytest.raises(ValueError, match="a is empty"):
        paired_bootstrap(np.array([]), np.array([]))
