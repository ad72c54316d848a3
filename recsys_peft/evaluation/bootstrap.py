"""Bootstrap confidence intervals for metrics averaged over users.

Each input is a 1-D array of per-user metric values, such as one entry of
``ranking_metrics``. Users are resampled with replacement, and the interval is the percentile
interval of the resampled means. Results depend only on the input and the seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Maximum number of sampled user indices held in memory at once (8 bytes each, so 32 MiB).
# Resamples are drawn in blocks of rows below this size, so a large user set does not
# allocate an (n_resamples, U) index matrix in one piece.
_MAX_INDICES_PER_BLOCK = 1 << 22


def _validate_values(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-user values, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty, but a bootstrap needs at least one user's value")
    if not np.all(np.isfinite(array)):
        bad_count = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} must be finite, got {bad_count} NaN or infinite values")
    return array


def _validate_settings(n_resamples: int, confidence: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _resampled_blocks(num_users: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield blocks of resampled user indices, shape (rows, U), n_resamples rows in total."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _MAX_INDICES_PER_BLOCK // num_users)
    remaining = n_resamples
    while remaining > 0:
        rows = min(rows_per_block, remaining)
        yield rng.integers(0, num_users, size=(rows, num_users))  # (rows, U)
        remaining -= rows


def _resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Return the mean of ``values`` over each of n_resamples bootstrap samples of users."""
    means = [values[indices].mean(axis=1) for indices in _resampled_blocks(len(values), n_resamples, seed)]
    return np.concatenate(means)  # (n_resamples,)


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Estimate a percentile bootstrap confidence interval for the mean of per-user values.

    Returns:
        (mean, low, high). The mean is that of the input itself, and low and high are the
        (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the resampled means. The
        percentile interval usually contains the mean, but for very skewed values it need not.

    Raises:
        ValueError: when values is empty, not 1-D or not finite, or a setting is out of range.
    """
    _validate_settings(n_resamples, confidence)
    array = _validate_values(values, "values")

    means = _resampled_means(array, n_resamples, seed)
    low, high = _percentile_interval(means, confidence)
    return float(array.mean()), low, high


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Compare two models on the same users with a paired bootstrap of the difference b - a.

    ``a`` and ``b`` are per-user values of one metric for models A and B, with the same users in
    the same order. Each resample draws users and keeps both models' values for each user
    drawn, so the variation between users cancels out of the difference.

    Returns:
        ``mean_diff``: mean of b - a, positive when B scores higher. ``low`` and ``high``:
        percentile interval of the resampled mean differences. ``p_b_not_better``: fraction of
        resamples whose mean difference is <= 0, a one-sided bootstrap estimate of how often B
        fails to beat A.

    Raises:
        ValueError: when the arrays differ in length or are empty, not 1-D or not finite, or a
        setting is out of range.
    """
    _validate_settings(n_resamples, confidence)
    values_a = _validate_values(a, "a")
    values_b = _validate_values(b, "b")
    if len(values_a) != len(values_b):
        raise ValueError(
            f"a and b must contain the same users in the same order, got {len(values_a)} values "
            f"in a and {len(values_b)} values in b"
        )

    differences = values_b - values_a
    means = _resampled_means(differences, n_resamples, seed)
    low, high = _percentile_interval(means, confidence)
    return {
        "mean_diff": float(differences.mean()),
        "low": low,
        "high": high,
        "p_b_not_better": float(np.mean(means <= 0.0)),
    }
