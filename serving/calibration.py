"""Temperature scaling, calibration error and the thresholds behind `uncertain_reason`.

Everything here is NumPy on logits that the caller computed, so the same
functions serve the training run and its tests.
"""

from pathlib import Path

import numpy as np

# Share of each source's hand images that may be flagged on the calibration
# split. The held-out budget is 2%, so half of it leaves room for sampling noise.
MAX_FLAGGED_HANDS = 0.01

# Weight of "a wrong answer was flagged" against "a no-hand image was flagged".
WRONG_ANSWER_WEIGHT = 0.5

_TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
_HAND_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.025), 3)
_CONFIDENCE_THRESHOLDS = np.concatenate([[0.0], np.round(np.arange(0.40, 0.96, 0.025), 3)])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Return the row-wise softmax of float logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the mean cross-entropy of integer `labels` under softmax(`logits`)."""
    probabilities = softmax(logits)
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the temperature in [0.25, 8] that minimises the cross-entropy of logits / T."""
    losses = [negative_log_likelihood(logits / t, labels) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Return the expected calibration error and per-bin confidence and accuracy.

    The error is the mean, weighted by bin size, of |accuracy - confidence|
    over equal-width bins of the top probability.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)

    rows = []
    error = 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        gap = abs(correct[members].mean() - confidence[members].mean())
        error += gap * members.mean()
        rows.append({
            "low": float(edges[b]), "high": float(edges[b + 1]), "images": int(members.sum()),
            "confidence": float(confidence[members].mean()),
            "accuracy": float(correct[members].mean()),
        })
    return {"ece": float(error), "bins": rows}


def choose_thresholds(hands: list[dict], no_hand: dict) -> dict:
    """Pick `hand` and `confidence` thresholds from calibration-split outputs.

    `hands` contains one dict per source of hand images with arrays `hand`
    (probability of a hand), `top` (top gesture score) and `correct`. `no_hand`
    contains `hand` and `top` for pictures without a hand. The pair chosen flags
    at most MAX_FLAGGED_HANDS of each hand source and otherwise flags as many
    no-hand pictures and wrong answers as it can.
    """
    hands = [source for source in hands if len(source["hand"])]
    wrong = np.concatenate([~source["correct"] for source in hands]) if hands \
        else np.zeros(0, bool)
    best: tuple[float, float, float] | None = None

    for hand_threshold in _HAND_THRESHOLDS:
        for confidence_threshold in _CONFIDENCE_THRESHOLDS:
            pair = (hand_threshold, confidence_threshold)
            if any(flag(source, *pair).mean() > MAX_FLAGGED_HANDS for source in hands):
                continue

            caught = flag(no_hand, *pair).mean() if len(no_hand["hand"]) else 0.0
            flags = np.concatenate([flag(source, *pair) for source in hands]) if hands \
                else np.zeros(0, bool)
            wrong_caught = flags[wrong].mean() if wrong.any() else 0.0
            score = caught + WRONG_ANSWER_WEIGHT * wrong_caught
            if best is None or score > best[0] + 1e-9:
                best = (score, float(hand_threshold), float(confidence_threshold))

    if best is None:
        # Even the lowest thresholds flag too many hands: flag only the clearest cases.
        return {"hand": float(_HAND_THRESHOLDS[0]), "confidence": 0.0}
    return {"hand": best[1], "confidence": best[2]}


def flag(outputs: dict, hand_threshold: float, confidence_threshold: float) -> np.ndarray:
    """Return which images the thresholds flag, as the exported signature does."""
    return (outputs["hand"] < hand_threshold) | (outputs["top"] < confidence_threshold)


def plot_reliability(before: dict, after: dict, path: Path) -> None:
    """Save a reliability diagram of top-class confidence against accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for label, result, marker in (("before scaling", before, "o"), ("after scaling", after, "s")):
        bins = result["bins"]
        axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins],
                  marker=marker, label=f"{label} (ECE {result['ece']:.3f})")
    axis.set(xlabel="mean top-class probability in bin", ylabel="accuracy in bin",
             xlim=(0, 1), ylim=(0, 1.02), title="Reliability on the held-out images")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
