// The page's behaviour: send chosen, dropped or captured images to
// POST /classify and show each prediction or error next to its image.
"use strict";

// The gateway's default RPS_MAX_FILES. A larger selection goes out in several requests.
const MAX_FILES_PER_REQUEST = 16;

// Milliseconds before a request is abandoned. The gateway replies 504 after its
// own RPC deadline (5 s by default), so this only catches a gateway that hangs.
const REQUEST_TIMEOUT_MS = 60000;

// Statuses that reject a whole multi-file request because of one file, so
// each file of that request is sent again alone to find out which one failed.
const PER_FILE_STATUSES = new Set([400, 413, 415]);

const CLASSIFY_URL = new URL("classify", document.baseURI);

// Explanations of the `reason` of an uncertain prediction (docs/api.md lists the reasons).
const UNCERTAIN_EXPLANATIONS = {
  no_hand: "the image does not look like a hand gesture.",
  low_confidence: "the model is not sure which gesture the hand shows.",
};

const elements = {
  dropZone: document.getElementById("drop-zone"),
  fileInput: document.getElementById("file-input"),
  cameraStart: document.getElementById("camera-start"),
  cameraCapture: document.getElementById("camera-capture"),
  cameraStop: document.getElementById("camera-stop"),
  cameraMessage: document.getElementById("camera-message"),
  cameraVideo: document.getElementById("camera-video"),
  clearResults: document.getElementById("clear-results"),
  status: document.getElementById("status"),
  results: document.getElementById("results"),
};

// Requests run one after another, so a large selection does not flood the gateway.
let requestQueue = Promise.resolve();
let pendingCount = 0;
let cameraStream = null;

// ---- Sending images ----

function classifyFiles(fileList) {
  const files = Array.from(fileList);
  if (files.length === 0) {
    return;
  }

  const cards = files.map((file) => createCard(file));
  elements.results.prepend(...cards.map((card) => card.item));
  elements.clearResults.disabled = false;
  setPending(pendingCount + cards.length);

  for (let start = 0; start < cards.length; start += MAX_FILES_PER_REQUEST) {
    const batch = cards.slice(start, start + MAX_FILES_PER_REQUEST);
    requestQueue = requestQueue.then(() => classifyBatch(batch));
  }
}

async function classifyBatch(cards) {
  cards.forEach((card) => setCardState(card, "busy", "Classifying…"));
  const outcome = await postImages(cards.map((card) => card.file));

  if (outcome.predictions) {
    cards.forEach((card, index) => showPrediction(card, outcome.predictions[index]));
  } else if (cards.length > 1 && PER_FILE_STATUSES.has(outcome.status)) {
    for (const card of cards) {
      await classifyBatch([card]);
    }
    return;
  } else {
    cards.forEach((card) => showError(card, outcome.message));
  }
  setPending(pendingCount - cards.length);
}

// Resolves to {predictions} on success or to {status, message} on any failure. It never rejects.
async function postImages(files) {
  const form = new FormData();
  files.forEach((file) => form.append("file", file, file.name));

  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(CLASSIFY_URL, { method: "POST", body: form, signal: controller.signal });
  } catch (error) {
    const message = error.name === "AbortError"
      ? `The gateway did not reply within ${REQUEST_TIMEOUT_MS / 1000} s. Try again later.`
      : "Could not reach the gateway: the network request failed. Check that the gateway is running and try again.";
    return { status: 0, message };
  } finally {
    clearTimeout(timer);
  }

  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }

  if (response.ok && body && Array.isArray(body.predictions) && body.predictions.length === files.length) {
    return { predictions: body.predictions };
  }
  if (response.ok) {
    return { status: response.status, message: "The gateway sent a reply this page cannot read." };
  }
  return { status: response.status, message: describeError(response.status, body) };
}

function describeError(status, body) {
  const detail = body && typeof body.detail === "string" ? body.detail : "";
  const headings = {
    400: "Not a readable image",
    413: "Too large",
    415: "Unsupported type",
    502: "The model server failed",
    503: "The model is unavailable",
    504: "The model server timed out",
  };
  const heading = headings[status] || `The gateway answered HTTP ${status}`;
  return detail ? `${heading}: ${detail}` : `${heading}.`;
}

function setPending(count) {
  pendingCount = count;
  const busy = count > 0;
  elements.results.setAttribute("aria-busy", String(busy));
  if (busy) {
    elements.status.textContent = `Classifying ${count} ${count === 1 ? "image" : "images"}…`;
    return;
  }

  const cards = elements.results.querySelectorAll(".result");
  const failed = elements.results.querySelectorAll(".result[data-state='error']").length;
  const uncertain = elements.results.querySelectorAll(".result[data-certainty='uncertain']").length;
  const uncertainNote = uncertain > 0 ? ` (${uncertain} uncertain)` : "";
  elements.status.textContent = cards.length === 0
    ? "No images sent yet."
    : `${cards.length - failed} classified${uncertainNote}, ${failed} failed.`;
}

// ---- Result cards ----

function createCard(file) {
  const item = document.createElement("li");
  item.className = "result";

  const figure = document.createElement("figure");
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  item.dataset.previewUrl = preview.src;
  preview.alt = `Preview of ${file.name}`;
  preview.addEventListener("error", () => {
    preview.replaceWith(textElement("p", "no-preview", "No preview: the browser cannot show this file."));
  });
  const caption = textElement("figcaption", "file-name", file.name);
  figure.append(preview, caption);

  const body = document.createElement("div");
  body.className = "result-body";

  item.append(figure, body);

  const card = { file, item, body };
  setCardState(card, "queued", "Waiting to be sent…");
  return card;
}

function setCardState(card, state, text) {
  card.item.dataset.state = state;
  delete card.item.dataset.certainty;
  card.item.setAttribute("aria-busy", String(state === "queued" || state === "busy"));
  const spinner = document.createElement("span");
  spinner.className = "spinner";
  spinner.setAttribute("aria-hidden", "true");
  const line = textElement("p", "progress", text);
  line.prepend(spinner);
  card.body.replaceChildren(line);
}

function showPrediction(card, prediction) {
  card.item.dataset.state = "done";
  card.item.setAttribute("aria-busy", "false");

  // A reply from a gateway without the `uncertain` field counts as confident.
  const uncertain = prediction.uncertain === true;
  card.item.dataset.certainty = uncertain ? "uncertain" : "confident";

  const label = textElement("p", "label", "");
  label.append(
    textElement("strong", "label-name", prediction.label),
    ` (${formatPercent(prediction.confidence)})`,
  );
  const details = [label];
  if (uncertain) {
    details.push(uncertainNote(prediction.reason));
  }

  const scores = document.createElement("ul");
  scores.className = "scores";
  scores.setAttribute("aria-label", "Score per class");
  for (const [name, score] of Object.entries(prediction.scores)) {
    scores.append(scoreRow(name, score, name === prediction.label));
  }

  details.push(scores);
  // null from a model version that does not judge whether the image shows a hand.
  if (typeof prediction.hand_probability === "number") {
    details.push(textElement(
      "p", "hand-probability", `Probability of a hand gesture: ${formatPercent(prediction.hand_probability)}`,
    ));
  }

  const model = textElement(
    "p", "model", `Model ${prediction.model.name}, version ${prediction.model.version}`,
  );
  const time = document.createElement("time");
  time.dateTime = prediction.server_time;
  time.textContent = formatTime(prediction.server_time);
  const serverTime = textElement("p", "server-time", "Server time ");
  serverTime.append(time);

  card.body.replaceChildren(...details, model, serverTime);
}

// Builds the note that states in words why the model flagged the prediction, because
// the card's colour alone would not reach everyone.
function uncertainNote(reason) {
  let explanation = "the model is not sure of this answer.";
  if (Object.hasOwn(UNCERTAIN_EXPLANATIONS, reason)) {
    explanation = UNCERTAIN_EXPLANATIONS[reason];
  } else if (typeof reason === "string") {
    // A reason from a later model version, shown as the gateway sent it.
    explanation = `the model is not sure of this answer (reason: ${reason}).`;
  }
  const note = textElement("p", "uncertain-note", ` ${explanation}`);
  note.prepend(textElement("strong", "uncertain-heading", "Uncertain:"));
  return note;
}

function scoreRow(name, score, isTop) {
  const row = document.createElement("li");
  row.className = isTop ? "score top" : "score";

  const bar = document.createElement("span");
  bar.className = "bar";
  bar.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.className = "bar-fill";
  // Set through the CSSOM because the Content-Security-Policy blocks style attributes.
  fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
  bar.append(fill);

  row.append(textElement("span", "class-name", name), bar, textElement("span", "percent", formatPercent(score)));
  return row;
}

function showError(card, message) {
  card.item.dataset.state = "error";
  delete card.item.dataset.certainty;
  card.item.setAttribute("aria-busy", "false");
  const line = textElement("p", "error", message);
  line.setAttribute("role", "alert");
  card.body.replaceChildren(line);
}

function clearResults() {
  // Cards still waiting for a reply stay, so their results still have a place to go.
  for (const item of elements.results.querySelectorAll(".result")) {
    if (item.getAttribute("aria-busy") === "true") {
      continue;
    }
    URL.revokeObjectURL(item.dataset.previewUrl);
    item.remove();
  }
  elements.clearResults.disabled = elements.results.children.length === 0;
  setPending(pendingCount);
}

function textElement(tag, className, text) {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

function formatPercent(fraction) {
  return `${(fraction * 100).toFixed(1)}%`;
}

// Shows the gateway's own clock and UTC offset, for example 2026-12-04 19:20:00.123 +00:00.
function formatTime(isoTime) {
  const match = /^(\d{4}-\d\d-\d\d)T([\d:.]+)([+-]\d\d:\d\d|Z)$/.exec(isoTime);
  return match ? `${match[1]} ${match[2]} ${match[3]}` : isoTime;
}

// ---- Drag and drop ----

function hasFiles(event) {
  return event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
}

function setUpDragAndDrop() {
  elements.dropZone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) {
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    elements.dropZone.classList.add("drag-over");
  });
  elements.dropZone.addEventListener("dragleave", (event) => {
    if (!elements.dropZone.contains(event.relatedTarget)) {
      elements.dropZone.classList.remove("drag-over");
    }
  });
  elements.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    elements.dropZone.classList.remove("drag-over");
    classifyFiles(event.dataTransfer.files);
  });

  // A file dropped beside the zone would otherwise replace the page with the file.
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
    }
  });
  window.addEventListener("drop", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
    }
  });
}

// ---- Camera ----

function cameraUnavailableReason() {
  if (!window.isSecureContext) {
    return "The camera is not available: browsers allow it only on secure pages. Open this page over HTTPS or at http://localhost.";
  }
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== "function") {
    return "The camera is not available in this browser. Choose an image file instead.";
  }
  return "";
}

function describeCameraError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission was denied. Allow the camera for this page in the browser's site settings, then press Start camera again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect a camera or choose an image file instead.";
    case "NotReadableError":
    case "AbortError":
      return "The camera could not be started; another program may be using it.";
    default:
      return `The camera could not be started (${error && error.name ? error.name : "unknown error"}).`;
  }
}

async function startCamera() {
  // A disabled button loses focus, so keyboard focus moves on to the next useful button.
  const keepFocus = document.activeElement === elements.cameraStart;
  elements.cameraStart.disabled = true;
  elements.cameraMessage.textContent = "Starting the camera…";
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (error) {
    elements.cameraMessage.textContent = describeCameraError(error);
    elements.cameraStart.disabled = false;
    if (keepFocus) {
      elements.cameraStart.focus();
    }
    return;
  }

  const video = elements.cameraVideo;
  video.srcObject = cameraStream;
  video.hidden = false;
  try {
    await video.play();
  } catch (error) {
    stopCamera();
    elements.cameraMessage.textContent = describeCameraError(error);
    return;
  }
  elements.cameraCapture.disabled = false;
  elements.cameraStop.disabled = false;
  if (keepFocus) {
    elements.cameraCapture.focus();
  }
  elements.cameraMessage.textContent = "The camera is on. Press Take photo to classify the current frame.";
}

function stopCamera() {
  const keepFocus = [elements.cameraCapture, elements.cameraStop].includes(document.activeElement);
  if (cameraStream) {
    cameraStream.getTracks().forEach((track) => track.stop());
    cameraStream = null;
  }
  elements.cameraVideo.srcObject = null;
  elements.cameraVideo.hidden = true;
  elements.cameraCapture.disabled = true;
  elements.cameraStop.disabled = true;
  elements.cameraStart.disabled = false;
  if (keepFocus) {
    elements.cameraStart.focus();
  }
  elements.cameraMessage.textContent = "The camera is off.";
}

function capturePhoto() {
  const video = elements.cameraVideo;
  if (!cameraStream || video.videoWidth === 0) {
    elements.cameraMessage.textContent = "The camera has no picture yet. Wait a moment and try again.";
    return;
  }

  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => {
    if (!blob) {
      elements.cameraMessage.textContent = "The photo could not be encoded as PNG.";
      return;
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    classifyFiles([new File([blob], `camera-${stamp}.png`, { type: "image/png" })]);
  }, "image/png");
}

function setUpCamera() {
  const reason = cameraUnavailableReason();
  if (reason) {
    elements.cameraStart.disabled = true;
    elements.cameraMessage.textContent = reason;
    return;
  }
  elements.cameraStart.addEventListener("click", startCamera);
  elements.cameraStop.addEventListener("click", stopCamera);
  elements.cameraCapture.addEventListener("click", capturePhoto);
  window.addEventListener("pagehide", () => {
    if (cameraStream) {
      stopCamera();
    }
  });
}

// ---- Start ----

elements.fileInput.addEventListener("change", () => {
  classifyFiles(elements.fileInput.files);
  // Clearing the input lets the same file be chosen again.
  elements.fileInput.value = "";
});
elements.clearResults.addEventListener("click", clearResults);
setUpDragAndDrop();
setUpCamera();
