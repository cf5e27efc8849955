"""Data builders shared by the ML/REML engine's tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def repeated_weights(seed: int, n_ids: int, n_weeks: int, level_sd: float, slope: float,
                     noise_sd: float, noise_trend: float = 0.0,
                     dropped: Sequence[int] = ()) -> pd.DataFrame:
    """Simulated pig weights, one row per pig (``id``) and ``week`` 1..n_weeks.

    ``weight = 20 + slope * week + level + e``, a level per pig ~ N(0, level_sd) and
    e ~ N(0, noise_sd + noise_trend * week), drawn pig by pig from ``default_rng(seed)``.
    ``dropped``: row positions removed (dropped visits: groups of several sizes and time
    patterns), the index then reset.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for pig in range(n_ids):
        level = rng.normal(0, level_sd)
        for week in range(1, n_weeks + 1):
            rows.append({"id": f"p{pig:02d}", "week": week,
                         "weight": 20 + slope * week + level
                         + rng.normal(0, noise_sd + noise_trend * week)})
    frame = pd.DataFrame(rows)
    if dropped:
        frame = frame.drop(index=list(dropped)).reset_index(drop=True)
    return frame
