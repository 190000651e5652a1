"""The browser page at GET /, driven in Debian's Chromium by Playwright.

Every test runs against the real gateway under gunicorn and the real local
model server. Playwright drives /usr/bin/chromium (Debian's `chromium`
package) because Playwright's own browser download fails on machines without
internet access. Set RPS_WEB_SCREENSHOT to a PNG path to save the page with
the three samples' results there (docs/web-page.png is made that way).

The tests that send a uniform grey image to the session's gateway expect the
committed model to judge its certainty (version 2 or later) and to flag that
image as "no_hand", so they fail while version 1 is the latest committed version.
"""

import base64
import os
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import SAMPLE_LABELS, SAMPLES, start_gateway, stop

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # Reported by the `browser` fixture, so that other test files still run.
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Grant camera permission without a prompt and show a generated test pattern.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

# Milliseconds: the browser's start, each page action and each wait for the page
# to show a result. The first Predict call of a session may take a few seconds.
LAUNCH_TIMEOUT_MS = 60_000
ACTION_TIMEOUT_MS = 15_000
RESULT_TIMEOUT_MS = 30_000

DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}

# The largest request body of the small-limit gateway: each sample fits alone
# (the largest is 97,601 bytes) but not the three together.
SMALL_UPLOAD_LIMIT = 120_000

NO_MEDIA_DEVICES_SCRIPT = "delete Navigator.prototype.mediaDevices;"

DENY_CAMERA_SCRIPT = """
navigator.mediaDevices.getUserMedia = () =>
    Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


@pytest.fixture(scope="module")
def browser() -> "Browser":
    """Debian's Chromium, headless, with a fake camera."""
    if sync_playwright is None:
        pytest.fail("playwright is not installed: pip install -r requirements/browser.txt")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=LAUNCH_TIMEOUT_MS,
        )
    except Exception:
        playwright.stop()
        raise
    yield chromium
    chromium.close()
    playwright.stop()


def open_page(browser, url: str, viewport: dict = DESKTOP, init_script: str | None = None) -> "Page":
    """Open `url` in a new browser context with bounded timeouts."""
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
    if init_script:
        context.add_init_script(script=init_script)

    page = context.new_page()
    page.goto(url)
    return page


@pytest.fixture
def page(browser, gateway):
    """The page from the session's gateway, at a desktop size."""
    page = open_page(browser, gateway.url + "/")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def small_limit_gateway(tmp_path_factory, model_server):
    """A gateway with the real model server and a request body limit of SMALL_UPLOAD_LIMIT bytes."""
    log = tmp_path_factory.mktemp("small_limit_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address, RPS_MAX_UPLOAD_BYTES=str(SMALL_UPLOAD_LIMIT))
    yield server
    stop(server.process)


def result_card(page, file_name: str):
    """Return the locator of the result card captioned `file_name`."""
    return page.locator(".result").filter(
        has=page.locator(".file-name", has_text=re.compile(f"^{re.escape(file_name)}$"))
    )


def collect_post(request, urls: list[str]) -> None:
    """Append the URL of a POST request to `urls`."""
    if request.method == "POST":
        urls.append(request.url)


def collect_console_error(message, texts: list[str]) -> None:
    """Append the text of a console error message to `texts`."""
    if message.type == "error":
        texts.append(message.text)


def wait_until_idle(page) -> None:
    """Wait until no request of the page is in flight."""
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false", timeout=RESULT_TIMEOUT_MS)


def upload_samples(page) -> None:
    """Choose the three sample images in the file input and wait for their results."""
    page.set_input_files("#file-input", [SAMPLES / name for name in SAMPLE_LABELS])
    wait_until_idle(page)


# ---- Served files ----


def test_page_served_with_security_headers(gateway):
    response = requests.get(gateway.url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "img-src 'self' blob: data:" in policy
    assert response.headers["Permissions-Policy"].startswith("camera=(self)")
    assert response.headers["Cache-Control"] == "no-cache"
    assert "ETag" in response.headers


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
def test_assets_served_and_revalidated(gateway, path, content_type):
    response = requests.get(gateway.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert response.headers["Cache-Control"] == "no-cache"
    assert "Content-Security-Policy" in response.headers

    again = requests.get(
        gateway.url + path, headers={"If-None-Match": response.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304


def test_page_loads_nothing_from_other_origins(browser, gateway):
    requested = []
    page = open_page(browser, "about:blank")
    page.on("request", lambda request: requested.append(request.url))
    page.goto(gateway.url + "/")
    page.wait_for_load_state("load")
    page.context.close()

    assert requested
    assert all(url.startswith(gateway.url + "/") for url in requested), requested


# ---- Images ----


def test_samples_show_labels_and_scores(browser, gateway):
    console_errors = []
    page = open_page(browser, gateway.url + "/")
    page.on("console", lambda message: collect_console_error(message, console_errors))
    upload_samples(page)

    for file_name, label in SAMPLE_LABELS.items():
        card = result_card(page, file_name)
        expect(card.locator(".label-name")).to_have_text(label)
        expect(card.locator(".score")).to_have_count(3)
        expect(card.locator(".score.top .class-name")).to_have_text(label)
        expect(card.locator(".score.top .percent")).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
        expect(card.locator(".model")).to_have_text(re.compile(r"^Model rps, version \d+$"))
        expect(card.locator(".server-time")).to_have_text(re.compile(r"^Server time \d{4}-\d\d-\d\d \d\d:\d\d:"))
        expect(card.locator(".server-time time")).to_have_attribute(
            "datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
        )
        assert card.locator("img").evaluate("image => image.naturalWidth") > 0
    expect(page.locator("#status")).to_have_text("3 classified, 0 failed.")

    screenshot = page.screenshot(full_page=True)
    target = os.environ.get("RPS_WEB_SCREENSHOT")
    if target:
        Path(target).write_bytes(screenshot)
    page.context.close()

    assert screenshot.startswith(b"\x89PNG")
    assert console_errors == []


def test_dropped_file_is_classified(page):
    encoded = base64.b64encode((SAMPLES / "paper1.png").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """encoded => {
            const bytes = Uint8Array.from(atob(encoded), character => character.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "paper1.png", {type: "image/png"}));
            return transfer;
        }""",
        encoded,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    wait_until_idle(page)

    expect(result_card(page, "paper1.png").locator(".label-name")).to_have_text("paper")


def test_more_than_16_files_split_into_requests(page, tmp_path):
    posts = []
    page.on("request", lambda request: collect_post(request, posts))
    paths = []
    for index in range(17):
        path = tmp_path / f"rock-{index:02d}.png"
        path.write_bytes((SAMPLES / "rock1.png").read_bytes())
        paths.append(path)

    page.set_input_files("#file-input", paths)
    wait_until_idle(page)

    expect(page.locator(".result .label-name")).to_have_count(17)
    expect(page.locator(".result .label-name", has_text="rock")).to_have_count(17)
    assert len(posts) == 2
    assert all(url.endswith("/classify") for url in posts)


def test_non_image_shows_gateway_detail(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("rock, paper, scissors\n")

    page.set_input_files("#file-input", notes)
    wait_until_idle(page)

    card = result_card(page, "notes.txt")
    expect(card).to_have_attribute("data-state", "error")
    expect(card.locator(".error")).to_have_text(
        "Not a readable image: notes.txt: the file is not a recognised image"
    )
    expect(card.locator(".no-preview")).to_be_visible()
    expect(page.locator("#status")).to_have_text("0 classified, 1 failed.")


def test_too_large_file_shows_limit(browser, small_limit_gateway, tmp_path):
    large = tmp_path / "large.png"
    large.write_bytes(os.urandom(SMALL_UPLOAD_LIMIT * 2))
    page = open_page(browser, small_limit_gateway.url + "/")

    page.set_input_files("#file-input", large)
    wait_until_idle(page)
    message = result_card(page, "large.png").locator(".error").text_content()
    page.context.close()

    assert message.startswith("Too large: ")
    assert str(SMALL_UPLOAD_LIMIT) in message


def test_rejected_batch_retried_file_by_file(browser, small_limit_gateway):
    posts = []
    page = open_page(browser, small_limit_gateway.url + "/")
    page.on("request", lambda request: collect_post(request, posts))

    upload_samples(page)
    labels = {name: result_card(page, name).locator(".label-name").text_content() for name in SAMPLE_LABELS}
    page.context.close()

    # One request with all three, rejected with 413, then one request per file.
    assert len(posts) == 4
    assert labels == SAMPLE_LABELS


def test_model_unavailable_shows_503_detail(browser, orphan_gateway):
    page = open_page(browser, orphan_gateway.url + "/")

    page.set_input_files("#file-input", SAMPLES / "rock1.png")
    wait_until_idle(page)
    message = result_card(page, "rock1.png").locator(".error").text_content()
    page.context.close()

    assert message.startswith("The model is unavailable: ")
    assert len(message) > len("The model is unavailable: ")


def test_network_failure_shows_message(page):
    page.route("**/classify", lambda route: route.abort("connectionrefused"))

    page.set_input_files("#file-input", SAMPLES / "rock1.png")
    wait_until_idle(page)

    expect(result_card(page, "rock1.png").locator(".error")).to_contain_text("Could not reach the gateway")


def test_in_flight_state_shown(page):
    # Holding the request shows the page's state before the gateway replies.
    held_routes = []
    page.route("**/classify", lambda route: held_routes.append(route))

    page.set_input_files("#file-input", SAMPLES / "rock1.png")
    card = result_card(page, "rock1.png")
    expect(page.locator("#results")).to_have_attribute("aria-busy", "true")
    expect(card).to_have_attribute("aria-busy", "true")
    expect(card.locator(".progress")).to_have_text("Classifying…")
    expect(page.locator("#status")).to_have_text("Classifying 1 image…")

    for _ in range(50):  # Route handlers run while Playwright waits, so wait in steps.
        if held_routes:
            break
        page.wait_for_timeout(100)
    assert len(held_routes) == 1
    held_routes[0].continue_()
    wait_until_idle(page)
    expect(card.locator(".label-name")).to_have_text("rock")


# ---- Uncertain predictions ----


def test_uncertain_card_says_why(browser, gateway, grey_image):
    page = open_page(browser, gateway.url + "/")

    page.set_input_files("#file-input", [SAMPLES / "rock1.png", grey_image])
    wait_until_idle(page)

    grey = result_card(page, "grey.png")
    rock = result_card(page, "rock1.png")
    expect(grey).to_have_attribute("data-certainty", "uncertain")
    expect(grey.locator(".uncertain-note")).to_have_text(
        "Uncertain: the image does not look like a hand gesture."
    )
    expect(grey.locator(".label-name")).to_have_count(1)
    expect(grey.locator(".hand-probability")).to_have_text(
        re.compile(r"^Probability of a hand gesture: \d{1,3}\.\d%$")
    )
    expect(rock).to_have_attribute("data-certainty", "confident")
    expect(rock.locator(".uncertain-note")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("2 classified (1 uncertain), 0 failed.")

    # The border differs in style as well as colour, so it does not rely on colour alone.
    grey_border = grey.evaluate("card => getComputedStyle(card).borderTopStyle")
    rock_border = rock.evaluate("card => getComputedStyle(card).borderTopStyle")
    page.context.close()

    assert grey_border == "dashed"
    assert rock_border == "solid"


def test_version_1_card_has_no_certainty(browser, version_1_gateway, grey_image):
    page = open_page(browser, version_1_gateway.url + "/")

    page.set_input_files("#file-input", grey_image)
    wait_until_idle(page)

    card = result_card(page, "grey.png")
    expect(card).to_have_attribute("data-certainty", "confident")
    expect(card.locator(".label-name")).to_have_count(1)
    expect(card.locator(".uncertain-note")).to_have_count(0)
    expect(card.locator(".hand-probability")).to_have_count(0)
    expect(card.locator(".model")).to_have_text("Model rps, version 1")
    expect(page.locator("#status")).to_have_text("1 classified, 0 failed.")
    page.context.close()


# ---- Camera ----


def test_camera_capture_shows_result(page):
    page.click("#camera-start")
    expect(page.locator("#camera-capture")).to_be_enabled()
    expect(page.locator("#camera-video")).to_be_visible()

    page.click("#camera-capture")
    card = page.locator(".result").filter(has=page.locator(".file-name", has_text=re.compile(r"^camera-.*\.png$")))
    expect(card).to_have_count(1, timeout=RESULT_TIMEOUT_MS)
    wait_until_idle(page)

    # The fake camera's test pattern is no hand, so any of the three labels is right.
    expect(card).to_have_attribute("data-state", "done")
    assert card.locator(".label-name").text_content() in {"rock", "paper", "scissors"}
    assert card.locator("img").evaluate("image => image.naturalWidth") > 0

    page.click("#camera-stop")
    expect(page.locator("#camera-video")).to_be_hidden()
    expect(page.locator("#camera-capture")).to_be_disabled()
    stream_released = page.evaluate("() => document.getElementById('camera-video').srcObject === null")
    assert stream_released is True


def test_camera_missing_shows_message(browser, gateway):
    page = open_page(browser, gateway.url + "/", init_script=NO_MEDIA_DEVICES_SCRIPT)

    expect(page.locator("#camera-message")).to_have_text(
        "The camera is not available in this browser. Choose an image file instead."
    )
    expect(page.locator("#camera-start")).to_be_disabled()
    page.context.close()


def test_camera_denied_shows_message(browser, gateway):
    page = open_page(browser, gateway.url + "/", init_script=DENY_CAMERA_SCRIPT)

    page.click("#camera-start")
    expect(page.locator("#camera-message")).to_contain_text("Camera permission was denied")
    expect(page.locator("#camera-start")).to_be_enabled()
    page.context.close()


# ---- Keyboard and layout ----


def test_keyboard_reaches_file_input_and_camera(page):
    reached = []
    for _ in range(10):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id"))
        if "camera-start" in reached:
            break

    assert "file-input" in reached
    assert "camera-start" in reached
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"

    # Enter starts the camera, and focus moves to the button that takes the photo.
    page.keyboard.press("Enter")
    expect(page.locator("#camera-capture")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#camera-stop")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#camera-start")).to_be_focused()


def test_controls_have_accessible_names(page):
    expect(page.get_by_label("Choose one or more images")).to_have_attribute("type", "file")
    for name in ("Start camera", "Take photo", "Stop camera", "Clear results"):
        expect(page.get_by_role("button", name=name)).to_have_count(1)
    expect(page.locator("#results")).to_have_attribute("aria-live", "polite")


def test_phone_layout_has_no_horizontal_scroll(browser, gateway):
    page = open_page(browser, gateway.url + "/", viewport=PHONE)
    upload_samples(page)
    page.click("#camera-start")
    expect(page.locator("#camera-video")).to_be_visible()

    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    card_box = result_card(page, "rock1.png").bounding_box()
    page.click("#camera-stop")
    page.context.close()

    scroll_width, client_width = widths
    assert scroll_width <= client_width
    assert card_box["x"] >= 0
    assert card_box["x"] + card_box["width"] <= PHONE["width"]
