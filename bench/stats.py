"""Medians, percentiles and spread of repeated measurements."""

import statistics


def percentile(values: list[float], fraction: float) -> float:
    """Return the `fraction` (0 to 1) percentile of `values` by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def summarize(values: list[float]) -> dict:
    """Summarize repeated measurements as median, minimum, maximum and count."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }
