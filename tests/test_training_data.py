"""Training data pieces that run without TensorFlow: splits, no-hand pictures, masks, calibration."""

from pathlib import Path

import numpy as np
import pytest

from serving import calibration, dataset, no_hand


@pytest.mark.parametrize("name, clip", [
    ("rock.0001_png.rf.5e009a9ec5fbf7a8e856ba7f413996af_01894.jpg", "rock.0001"),
    ("paper_12_jpg.rf.abc_7.jpg", "paper_12"),
    ("IMG_3.JPEG.rf.x.jpg", "IMG_3.JPEG.rf.x"),
    ("rock01-000.webp", "rock01-000"),
])
def test_clip_name_strips_export_suffix(name, clip):
    assert dataset.clip_name(Path(name)) == clip


def test_grouped_split_keeps_clips_together():
    rng = np.random.default_rng(0)
    groups = [f"clip{int(g)}" for g in rng.integers(0, 60, 600)]
    labels = np.array([int(g[4:]) % 3 for g in groups])

    train, held_out = dataset.grouped_split(labels, groups, 0.2, seed=1)

    assert len(np.intersect1d(train, held_out)) == 0
    assert len(train) + len(held_out) == len(labels)
    assert not {groups[i] for i in train} & {groups[i] for i in held_out}
    for label in range(3):
        share = np.mean(labels[held_out] == label) / np.mean(labels == label)
        assert 0.15 < share * len(held_out) / len(labels) < 0.35


def test_grouped_split_repeats_with_seed():
    groups = [f"clip{i // 4}" for i in range(200)]
    labels = np.array([(i // 4) % 3 for i in range(200)])

    first = dataset.grouped_split(labels, groups, 0.25, seed=3)
    second = dataset.grouped_split(labels, groups, 0.25, seed=3)

    assert np.array_equal(first[1], second[1])


def test_background_masks_spare_highlights():
    image = np.full((40, 40, 3), 255, dtype=np.uint8)
    image[10:30, 10:30] = (200, 150, 120)
    image[18:22, 18:22] = 255

    mask = dataset.background_masks(image[np.newaxis])[0, ..., 0]

    assert mask[0, 0] == 1
    assert mask[20, 20] == 0
    assert mask[15, 15] == 0
    assert mask.sum() == 40 * 40 - 20 * 20


def test_no_hand_splits_are_disjoint():
    files = no_hand.picture_files()
    assignment = no_hand.assign_splits(len(files), seed=42)

    assert len(files) >= 20
    assert set(assignment) == set(no_hand.SPLITS)
    assert assignment == no_hand.assign_splits(len(files), seed=42)


def test_no_hand_build_covers_every_kind():
    built = no_hand.build("calibration", (24, 24), seed=42)

    assert built.images.shape[1:] == (24, 24, 3)
    assert built.images.dtype == np.uint8
    assert len(built.sources) == len(built.images)
    kinds = {source.split(":", 1)[1] for source in built.sources
             if source.startswith("generated:")}
    assert kinds == set(no_hand.GENERATED_KINDS)
    assert any(source.startswith("photo:") for source in built.sources)


def test_no_hand_held_out_pictures_unseen_in_training():
    train = no_hand.build("train", (16, 16), seed=42)
    held_out = no_hand.build("held_out", (16, 16), seed=42)

    photos = {s for s in train.sources if s.startswith("photo:") and s != "photo:lfw_subset"}
    held_out_photos = {s for s in held_out.sources
                       if s.startswith("photo:") and s != "photo:lfw_subset"}
    assert held_out_photos
    assert not photos & held_out_photos


@pytest.mark.parametrize("kind", no_hand.GENERATED_KINDS)
def test_generate_draws_rgb_image(kind):
    image = no_hand.generate(kind, np.random.default_rng(5), side=64)

    assert image.mode == "RGB"
    assert image.size == (64, 64)


@pytest.mark.parametrize("kind", ["page", "sketch", "chart"])
def test_pictures_on_white_are_mostly_white(kind):
    # They exist to teach that white around something is not a hand, so
    # most of each picture must be as bright as the rendered hands' background.
    rng = np.random.default_rng(7)
    for _ in range(10):
        pixels = np.asarray(no_hand.generate(kind, rng, side=96), np.float32)
        bright = (pixels.min(axis=-1) >= 180).mean()
        assert bright > 0.4, f"{kind}: only {bright:.0%} of the picture is bright"


def test_appended_kinds_keep_earlier_pictures_unchanged(monkeypatch):
    # Older versions are re-measured on the held-out pictures, so adding a
    # kind at the end must leave the pictures of the kinds before it as they were.
    full = no_hand.build("calibration", (16, 16), seed=42)
    monkeypatch.setattr(no_hand, "GENERATED_KINDS", no_hand.GENERATED_KINDS[:7])
    earlier = no_hand.build("calibration", (16, 16), seed=42)

    assert len(earlier.images) < len(full.images)
    assert np.array_equal(full.images[:len(earlier.images)], earlier.images)
    assert full.sources[:len(earlier.sources)] == earlier.sources


def test_fit_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 4))
    probabilities = calibration.softmax(logits)
    labels = np.array([rng.choice(4, p=p) for p in probabilities])

    temperature = calibration.fit_temperature(logits * 3.0, labels)

    assert 2.5 < temperature < 3.6


def test_reliability_of_calibrated_scores_is_small():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (4000, 3))
    probabilities = calibration.softmax(logits)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])

    calibrated = calibration.reliability(probabilities, labels)
    overconfident = calibration.reliability(calibration.softmax(logits * 4.0), labels)

    assert calibrated["ece"] < 0.03
    assert overconfident["ece"] > 0.1
    assert sum(b["images"] for b in calibrated["bins"]) == len(labels)


def test_choose_thresholds_respects_hand_budget():
    rng = np.random.default_rng(2)
    hands = [{"hand": rng.uniform(0.6, 1.0, 500), "top": rng.uniform(0.5, 1.0, 500),
              "correct": rng.random(500) < 0.95}]
    no_hands = {"hand": rng.uniform(0.0, 0.5, 300), "top": rng.uniform(0.3, 1.0, 300)}

    chosen = calibration.choose_thresholds(hands, no_hands)

    flagged_hands = calibration.flag(hands[0], chosen["hand"], chosen["confidence"])
    flagged_none = calibration.flag(no_hands, chosen["hand"], chosen["confidence"])
    assert flagged_hands.mean() <= calibration.MAX_FLAGGED_HANDS
    assert flagged_none.mean() > 0.95


def test_choose_thresholds_with_no_room_flags_little():
    hands = [{"hand": np.zeros(10), "top": np.zeros(10), "correct": np.ones(10, bool)}]
    no_hands = {"hand": np.zeros(10), "top": np.zeros(10)}

    assert calibration.choose_thresholds(hands, no_hands) == {"hand": 0.05, "confidence": 0.0}
