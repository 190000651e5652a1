"""The model's certainty outputs: parsing, the /classify fields and the /send_file sentence.

The parsing and sentence tests need no server. The others use the real local
model server and the gateway under gunicorn. The tests against the session's
gateway expect the committed model to judge its certainty (version 2 or
later). They expect it to flag a uniform grey image as "no_hand" and the
bundled samples as confident, so they fail while version 1 is the latest
committed version. The tests against `version_1_gateway` check that a model
without the certainty outputs still works.
"""

import json
import math
import re

import numpy as np
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from gateway.messages import UnexpectedReply, parse_prediction
from gateway.routes import format_send_file_sentence
from gateway.tfs import predict_pb2, types_pb2
from tests.conftest import ROOT, SAMPLE_LABELS, SAMPLES

# Seconds to wait for any single HTTP reply in these tests.
HTTP_TIMEOUT = 30

CLASS_NAMES = ["paper", "rock", "scissors"]
CERTAINTY_KEYS = {"uncertain", "reason", "hand_probability"}
SERVER_TIME = "2026-December-04 19:20:00"
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
STAMP = rf"\d{{4}}-({MONTHS})-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}}"
CONFIDENT_SENTENCE = re.compile(rf"The model predicts (rock|paper|scissors); server time {STAMP}")
NO_HAND_SENTENCE = re.compile(
    r"The model predicts (rock|paper|scissors), but the image does not look like a hand "
    rf"gesture; server time {STAMP}"
)
UNCERTAIN_METRIC = "rps_gateway_uncertain_predictions_total"


# --- helpers -----------------------------------------------------------------------------


def predict_response(
    batch_size: int,
    hand_probabilities: list[float] | None = None,
    reasons: list[str] | None = None,
) -> predict_pb2.PredictResponse:
    """Build a Predict reply encoded as the local model server encodes it."""
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "rps"
    response.model_spec.version.value = 2

    scores = response.outputs["scores"]
    scores.dtype = types_pb2.DT_FLOAT
    scores.tensor_shape.dim.add(size=batch_size)
    scores.tensor_shape.dim.add(size=len(CLASS_NAMES))
    scores.float_val.extend([0.1, 0.7, 0.2] * batch_size)

    classes = response.outputs["classes"]
    classes.dtype = types_pb2.DT_STRING
    classes.tensor_shape.dim.add(size=batch_size)
    classes.tensor_shape.dim.add(size=len(CLASS_NAMES))
    classes.string_val.extend([name.encode() for name in CLASS_NAMES] * batch_size)

    if hand_probabilities is not None:
        hand = response.outputs["hand_probability"]
        hand.dtype = types_pb2.DT_FLOAT
        hand.tensor_shape.dim.add(size=batch_size)
        hand.float_val.extend(hand_probabilities)
    if reasons is not None:
        reason = response.outputs["uncertain_reason"]
        reason.dtype = types_pb2.DT_STRING
        reason.tensor_shape.dim.add(size=batch_size)
        reason.string_val.extend([text.encode() for text in reasons])
    return response


def post_files(url: str, *paths, route: str = "/classify") -> requests.Response:
    """POST the files as multipart parts named `file`."""
    parts = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    return requests.post(f"{url}{route}", files=parts, timeout=HTTP_TIMEOUT)


def classify_entries(url: str, *paths) -> list[dict]:
    """Classify the files through /classify and return the predictions."""
    response = post_files(url, *paths)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def uncertain_counts(url: str) -> dict[str, float]:
    """Return the gateway's uncertain prediction counter by its reason label."""
    response = requests.get(f"{url}/metrics", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    counts = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == UNCERTAIN_METRIC:
                counts[sample.labels["reason"]] = sample.value
    return counts


def openapi_send_file_pattern() -> re.Pattern:
    """Return the pattern that gateway/openapi.json gives the /send_file reply."""
    document = json.loads((ROOT / "gateway" / "openapi.json").read_text())
    reply = document["paths"]["/send_file"]["post"]["responses"]["200"]
    return re.compile(reply["content"]["text/plain"]["schema"]["pattern"])


# --- parsing the Predict reply -----------------------------------------------------------


def test_parse_without_certainty_outputs():
    prediction = parse_prediction(predict_response(2), batch_size=2)

    assert prediction.hand_probabilities == [None, None]
    assert prediction.uncertain_reasons == [None, None]
    assert prediction.scores[0] == pytest.approx({"paper": 0.1, "rock": 0.7, "scissors": 0.2})


def test_parse_reads_certainty_outputs():
    response = predict_response(
        3, hand_probabilities=[0.97, 0.02, 0.9], reasons=["", "no_hand", "low_confidence"]
    )

    prediction = parse_prediction(response, batch_size=3)

    assert prediction.hand_probabilities == pytest.approx([0.97, 0.02, 0.9])
    assert prediction.uncertain_reasons == [None, "no_hand", "low_confidence"]


def test_parse_hand_probability_tensor_content():
    response = predict_response(2)
    hand = response.outputs["hand_probability"]
    hand.dtype = types_pb2.DT_FLOAT
    hand.tensor_shape.dim.add(size=2)
    hand.tensor_content = np.array([0.25, 0.75], dtype="<f4").tobytes()

    prediction = parse_prediction(response, batch_size=2)

    assert prediction.hand_probabilities == [0.25, 0.75]


def test_parse_short_value_lists_repeat_last():
    # TensorFlow fills a shape from a shorter *_val list by repeating its last value.
    response = predict_response(3, hand_probabilities=[0.5], reasons=["", "no_hand"])

    prediction = parse_prediction(response, batch_size=3)

    assert prediction.hand_probabilities == [0.5, 0.5, 0.5]
    assert prediction.uncertain_reasons == [None, "no_hand", "no_hand"]


def test_parse_passes_unknown_reason_unchanged():
    response = predict_response(2, reasons=["blurry", "zu dunkel ☾"])

    prediction = parse_prediction(response, batch_size=2)

    assert prediction.uncertain_reasons == ["blurry", "zu dunkel ☾"]


def test_parse_reads_each_output_alone():
    only_hand = parse_prediction(predict_response(1, hand_probabilities=[0.4]), batch_size=1)
    only_reason = parse_prediction(predict_response(1, reasons=["no_hand"]), batch_size=1)

    assert only_hand.hand_probabilities == pytest.approx([0.4])
    assert only_hand.uncertain_reasons == [None]
    assert only_reason.hand_probabilities == [None]
    assert only_reason.uncertain_reasons == ["no_hand"]


def _wrong_hand_dtype(response):
    response.outputs["hand_probability"].dtype = types_pb2.DT_DOUBLE


def _hand_as_column(response):
    response.outputs["hand_probability"].tensor_shape.dim.add(size=1)


def _reason_for_one_image(response):
    response.outputs["uncertain_reason"].tensor_shape.dim[0].size = 1


def _reason_as_float(response):
    response.outputs["uncertain_reason"].dtype = types_pb2.DT_FLOAT


def _reason_not_utf8(response):
    response.outputs["uncertain_reason"].string_val[1] = b"\xff\xfe"


def _hand_above_one(response):
    response.outputs["hand_probability"].float_val[0] = 1.5


def _hand_negative(response):
    response.outputs["hand_probability"].float_val[1] = -0.25


def _hand_not_a_number(response):
    response.outputs["hand_probability"].float_val[0] = math.nan


def _hand_content_too_short(response):
    hand = response.outputs["hand_probability"]
    hand.ClearField("float_val")
    hand.tensor_content = np.array([0.5], dtype="<f4").tobytes()


def _reason_without_values(response):
    response.outputs["uncertain_reason"].ClearField("string_val")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            _wrong_hand_dtype, r"'hand_probability' has dtype DT_DOUBLE, not DT_FLOAT",
            id="wrong_hand_dtype",
        ),
        pytest.param(
            _hand_as_column, r"'hand_probability' has shape \[2, 1\]; expected \[2\]",
            id="hand_as_column",
        ),
        pytest.param(
            _reason_for_one_image, r"'uncertain_reason' has shape \[1\]; expected \[2\]",
            id="reason_for_one_image",
        ),
        pytest.param(
            _reason_as_float, r"'uncertain_reason' has dtype DT_FLOAT, not DT_STRING",
            id="reason_as_float",
        ),
        pytest.param(
            _reason_not_utf8, r"'uncertain_reason' is not UTF-8",
            id="reason_not_utf8",
        ),
        pytest.param(
            _hand_above_one, r"'hand_probability' has 1.5, not a probability",
            id="hand_above_one",
        ),
        pytest.param(
            _hand_negative, r"'hand_probability' has -0.25, not a probability",
            id="hand_negative",
        ),
        pytest.param(
            _hand_not_a_number, r"'hand_probability' has nan, not a probability",
            id="hand_not_a_number",
        ),
        pytest.param(
            _hand_content_too_short, r"'hand_probability' has 4 bytes for 2 float32 values",
            id="hand_content_too_short",
        ),
        pytest.param(
            _reason_without_values, r"'uncertain_reason' has 0 values for 2 elements",
            id="reason_without_values",
        ),
    ],
)
def test_parse_rejects_invalid_certainty_output(change, message):
    response = predict_response(2, hand_probabilities=[0.9, 0.1], reasons=["", "no_hand"])
    change(response)

    with pytest.raises(UnexpectedReply, match=message):
        parse_prediction(response, batch_size=2)


# --- the /send_file sentence -------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "sentence"),
    [
        (None, "The model predicts rock; server time 2026-December-04 19:20:00"),
        (
            "no_hand",
            "The model predicts rock, but the image does not look like a hand gesture; "
            "server time 2026-December-04 19:20:00",
        ),
        (
            "low_confidence",
            "The model predicts rock, but it is not sure which gesture the hand shows; "
            "server time 2026-December-04 19:20:00",
        ),
        (
            "blurry",
            "The model predicts rock, but it is not sure of this answer; "
            "server time 2026-December-04 19:20:00",
        ),
    ],
    ids=["confident", "no_hand", "low_confidence", "unknown_reason"],
)
def test_send_file_sentence_by_reason(reason, sentence):
    assert format_send_file_sentence("rock", reason, SERVER_TIME) == sentence


@pytest.mark.parametrize("reason", [None, "no_hand", "low_confidence", "blurry"])
def test_send_file_sentence_fits_openapi_pattern(reason):
    sentence = format_send_file_sentence("scissors", reason, SERVER_TIME)

    assert openapi_send_file_pattern().fullmatch(sentence), sentence
    assert sentence.startswith("The model predicts scissors")


# --- the committed model (version 2 or later) --------------------------------------------


def test_classify_samples_reported_confident(gateway):
    names = sorted(SAMPLE_LABELS)

    entries = classify_entries(gateway.url, *[SAMPLES / name for name in names])

    for name, entry in zip(names, entries):
        assert CERTAINTY_KEYS <= set(entry), name
        assert entry["model"]["version"] >= 2, name
        assert entry["uncertain"] is False, name
        assert entry["reason"] is None, name
        assert isinstance(entry["hand_probability"], float), name
        assert 0.0 <= entry["hand_probability"] <= 1.0, name
        assert entry["hand_probability"] == round(entry["hand_probability"], 6), name


def test_classify_grey_image_flagged_no_hand(gateway, grey_image):
    [entry] = classify_entries(gateway.url, grey_image)

    assert entry["uncertain"] is True
    assert entry["reason"] == "no_hand"
    assert isinstance(entry["hand_probability"], float)
    assert 0.0 <= entry["hand_probability"] <= 1.0
    # The label and scores are still there, so clients can show the closest gesture.
    assert entry["label"] in CLASS_NAMES
    assert set(entry["scores"]) == set(CLASS_NAMES)


def test_classify_blank_white_page_flagged_no_hand(gateway, tmp_path):
    # The rendered training hands sit on white, so white is where a model
    # without white no-hand pictures takes an empty picture for a gesture.
    page = tmp_path / "white.png"
    Image.new("RGB", (300, 300), (255, 255, 255)).save(page, format="PNG")

    [entry] = classify_entries(gateway.url, page)

    assert entry["model"]["version"] >= 4
    assert entry["uncertain"] is True
    assert entry["reason"] == "no_hand"


def test_classify_batch_keeps_certainty_per_image(gateway, grey_image):
    paths = [SAMPLES / "rock1.png", grey_image, SAMPLES / "paper1.png"]

    entries = classify_entries(gateway.url, *paths)

    assert [entry["file"] for entry in entries] == ["rock1.png", "grey.png", "paper1.png"]
    assert [entry["uncertain"] for entry in entries] == [False, True, False]
    assert [entry["reason"] for entry in entries] == [None, "no_hand", None]
    assert entries[0]["label"] == "rock"
    assert entries[2]["label"] == "paper"


def test_send_file_grey_image_says_no_hand(gateway, grey_image):
    response = post_files(gateway.url, grey_image, route="/send_file")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert NO_HAND_SENTENCE.fullmatch(response.text), response.text


# --- a model version without the certainty outputs ---------------------------------------


def test_version_1_reports_no_certainty(version_1_gateway, grey_image):
    paths = [SAMPLES / name for name in sorted(SAMPLE_LABELS)] + [grey_image]

    entries = classify_entries(version_1_gateway.url, *paths)

    assert len(entries) == len(paths)
    for entry in entries:
        assert entry["model"] == {"name": "rps", "version": 1}
        assert entry["uncertain"] is False, entry["file"]
        assert entry["reason"] is None, entry["file"]
        assert entry["hand_probability"] is None, entry["file"]
    labels = {entry["file"]: entry["label"] for entry in entries[:-1]}
    assert labels == SAMPLE_LABELS


def test_version_1_send_file_keeps_classroom_sentence(version_1_gateway, grey_image):
    response = post_files(version_1_gateway.url, grey_image, route="/send_file")

    assert response.status_code == 200, response.text
    assert CONFIDENT_SENTENCE.fullmatch(response.text), response.text


def test_version_1_counts_no_uncertain_predictions(version_1_gateway, grey_image):
    classify_entries(version_1_gateway.url, grey_image, SAMPLES / "rock1.png")
    sentence = post_files(version_1_gateway.url, grey_image, route="/send_file")

    assert sentence.status_code == 200, sentence.text
    assert uncertain_counts(version_1_gateway.url) == {}
