"""HTTP routes: /classify, /send_file, /healthz and /readyz (see docs/api.md)."""

import time
from datetime import datetime

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from gateway import metrics
from gateway.errors import GatewayError, InvalidRequest, ModelServerError, ModelServerUnavailable
from gateway.messages import LOW_CONFIDENCE, NO_HAND, ModelMetadata, Prediction
from gateway.model_client import ModelClient
from gateway.preprocess import preprocess
from gateway.request_log import (
    READINESS_ROUTE,
    record_stage,
    set_file_count,
    stage,
    stage_milliseconds,
)
from gateway.settings import Settings
from gateway.uploads import Upload, read_form_uploads, read_uploads

blueprint = Blueprint("gateway", __name__)

SETTINGS_KEY = "rps_settings"
MODEL_CLIENT_KEY = "rps_model_client"

# The classroom server's time format, for example 2026-December-04 19:20:00.
SEND_FILE_TIME_FORMAT = "%Y-%B-%d %H:%M:%S"

# Clauses that follow "The model predicts LABEL, but" in the /send_file
# sentence of an uncertain prediction, by the model's `uncertain_reason`.
SEND_FILE_UNCERTAIN_PHRASES = {
    NO_HAND: "the image does not look like a hand gesture",
    LOW_CONFIDENCE: "it is not sure which gesture the hand shows",
}
# The phrase for a reason this gateway does not know, which a later model version may add.
SEND_FILE_OTHER_REASON_PHRASE = "it is not sure of this answer"

# Rounding keeps replies short. float32 carries about 7 significant digits, so
# 6 decimals drop precision only from scores below 0.1.
SCORE_DECIMALS = 6


def init_app(app: Flask, settings: Settings, model_client: ModelClient) -> None:
    """Register the routes and store the settings and model client they use."""
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[MODEL_CLIENT_KEY] = model_client
    app.register_blueprint(blueprint)


def _settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def _model_client() -> ModelClient:
    return current_app.extensions[MODEL_CLIENT_KEY]


@blueprint.post("/classify")
def classify() -> Response:
    """Classify every uploaded image in one batched Predict call."""
    uploads = read_uploads(request, _settings().max_files)
    set_file_count(len(uploads))

    prediction = _predict(uploads)

    server_time = datetime.now().astimezone().isoformat(timespec="milliseconds")
    model = {"name": _settings().model_name, "version": prediction.version}
    entries = [
        _prediction_entry(upload, prediction, index, model, server_time)
        for index, upload in enumerate(uploads)
    ]
    return jsonify(predictions=entries)


@blueprint.post("/send_file")
def send_file() -> Response:
    """Classify one `file` part and reply with the classroom server's one-line sentence."""
    uploads = read_form_uploads(request, _settings().max_files)
    set_file_count(len(uploads))
    if len(uploads) > 1:
        raise InvalidRequest(
            f"/send_file takes one file but the request has {len(uploads)}; "
            "use /classify for several"
        )

    prediction = _predict(uploads)

    label = _top_label(prediction.scores[0])
    server_time = datetime.now().strftime(SEND_FILE_TIME_FORMAT)
    sentence = format_send_file_sentence(label, prediction.uncertain_reasons[0], server_time)
    return Response(sentence, mimetype="text/plain")


def format_send_file_sentence(label: str, uncertain_reason: str | None, server_time: str) -> str:
    """Format the /send_file reply, the classroom sentence for a confident prediction.

    The sentence of an uncertain prediction still starts with "The model
    predicts LABEL", which existing clients parse, and then states in words why
    the model is unsure.
    """
    if uncertain_reason is None:
        return f"The model predicts {label}; server time {server_time}"
    phrase = SEND_FILE_UNCERTAIN_PHRASES.get(uncertain_reason, SEND_FILE_OTHER_REASON_PHRASE)
    return f"The model predicts {label}, but {phrase}; server time {server_time}"


@blueprint.get("/healthz")
def healthz() -> Response:
    """Report that the process is up, without contacting the model server."""
    return jsonify(status="ok")


@blueprint.get(READINESS_ROUTE)
def readyz() -> Response:
    """Report ready when the model server has a version of the model AVAILABLE."""
    try:
        version = _model_client().available_version()
    except ModelServerUnavailable:
        raise
    except ModelServerError as error:
        # Any failure to get the status means not ready, which probes expect as 503.
        raise ModelServerUnavailable(f"the model is not ready: {error.detail}") from error
    return jsonify(status="ready", model={"name": _settings().model_name, "version": version})


def _predict(uploads: list[Upload]) -> Prediction:
    max_pixels = _settings().max_pixels

    def prepare(metadata: ModelMetadata) -> np.ndarray:
        with stage("preprocess"):
            arrays = [_preprocess(upload, metadata.size, max_pixels) for upload in uploads]
            return np.stack(arrays)

    started = time.perf_counter()
    try:
        prediction = _model_client().classify(prepare)
    finally:
        # classify() also runs prepare(), whose time is logged as its own stage.
        elapsed = (time.perf_counter() - started) * 1000.0
        record_stage("model", elapsed - stage_milliseconds("preprocess"))

    for reason in prediction.uncertain_reasons:
        if reason is not None:
            metrics.count_uncertain_prediction(reason)
    return prediction


def _preprocess(upload: Upload, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    try:
        return preprocess(upload.data, size, max_pixels)
    except GatewayError as error:
        raise type(error)(f"{upload.label}: {error.detail}") from error


def _top_label(scores: dict[str, float]) -> str:
    return max(scores, key=scores.__getitem__)


def _prediction_entry(
    upload: Upload, prediction: Prediction, index: int, model: dict, server_time: str
) -> dict:
    scores = prediction.scores[index]
    hand_probability = prediction.hand_probabilities[index]
    reason = prediction.uncertain_reasons[index]
    label = _top_label(scores)
    return {
        "file": upload.name,
        "label": label,
        "confidence": round(scores[label], SCORE_DECIMALS),
        "scores": {name: round(value, SCORE_DECIMALS) for name, value in scores.items()},
        # A model without the certainty outputs gives false, null and null.
        "uncertain": reason is not None,
        "reason": reason,
        "hand_probability": (
            None if hand_probability is None else round(hand_probability, SCORE_DECIMALS)
        ),
        "model": model,
        "server_time": server_time,
    }
