"""Which prompt variant a task gets: a sticky weighted hash split, or Thompson sampling.

Split mode hashes (experiment, task key): the same key always lands on the same variant, on any
worker, with no shared state, and the shares follow the weights. Bandit mode draws one sample
from each arm's Beta posterior and takes the best (Thompson sampling), so traffic moves to the
better arm as evidence accumulates while every arm keeps a chance.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

__all__ = ["hash_unit", "split_variant", "thompson_variant"]


def hash_unit(experiment: str, key: str) -> float:
    """A number in [0, 1) fixed by (experiment, key): uniform across keys, stable across processes."""
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_variant(experiment: str, key: str, variants: Sequence[str],
                  weights: Sequence[float] | None = None) -> str:
    """The variant for `key`: sticky, with shares proportional to `weights` (equal by default)."""
    if not variants:
        raise ValueError("an experiment needs at least one variant")
    w = list(weights) if weights is not None else [1.0] * len(variants)
    if len(w) != len(variants) or any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"weights {w} do not fit variants {list(variants)}")
    point = hash_unit(experiment, key) * sum(w)
    upto = 0.0
    for variant, weight in zip(variants, w, strict=True):
        upto += weight
        if point < upto:
            return variant
    return variants[-1]


def thompson_variant(posteriors: Mapping[str, tuple[float, float]], rng: random.Random) -> str:
    """Thompson sampling: `posteriors` maps variant -> (successes, failures) (fractional allowed)."""
    if not posteriors:
        raise ValueError("an experiment needs at least one variant")
    return max(posteriors, key=lambda v: rng.betavariate(1.0 + posteriors[v][0], 1.0 + posteriors[v][1]))
