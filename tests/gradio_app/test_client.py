"""The demo as a client sees it: gradio_client against the app served on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.gradio_app.conftest import TEST_MAX_PIXELS, free_port, photo_array

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def classify(client, path: Path, model: str = "tiny") -> dict:
    return client.predict(handle_file(str(path)), model, api_name="/classify")


def analyse(client, path: Path, model: str = "tiny") -> tuple:
    return client.predict(handle_file(str(path)), model, api_name="/analyse")


def test_classify_returns_the_prediction_as_json(client, photos):
    result = classify(client, photos["red"])

    assert set(result) >= {
        "source",
        "top",
        "categories",
        "malignant_probability",
        "abstained",
        "abstain_reason",
    }
    assert result["source"] == "red_spot.jpg"  # the patient's file name, never the server's temp path
    assert result["top"] == result["categories"][0]
    assert result["top"]["label"] == "rdl" and result["top"]["display_name"] == "Reddish test lesion"
    scores = [c["score"] for c in result["categories"]]
    assert [c["label"] for c in result["categories"]] and scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-3)
    assert result["malignant_probability"] == pytest.approx(scores[0], abs=1e-6)  # rdl is the malignant class
    assert result["abstained"] is False and result["abstain_reason"] is None


def test_classify_matches_the_classifier_run_directly(client, served, photos):
    classifier = served.models["tiny"].classifier
    for name in ("red", "green", "blue"):
        direct = classifier.classify(photos[name]).to_dict()
        via_app = classify(client, photos[name])
        assert via_app["top"]["label"] == direct["top"]["label"]
        assert [c["score"] for c in via_app["categories"]] == pytest.approx(
            [c["score"] for c in direct["categories"]], abs=1e-6
        )


def test_page_shows_ranked_findings_risk_advice_and_the_crop_the_model_sees(client, served, photos):
    label, risk, advice, crop, raw = analyse(client, photos["red"])

    assert label["label"] == "Reddish test lesion"
    assert [c["label"] for c in label["confidences"]][0] == "Reddish test lesion"
    assert "risk-high" in risk and "High" in risk
    assert "dermatologist as soon as you can" in advice
    assert raw["top"]["label"] == "rdl"
    preview = photo_array(Path(crop["path"] if isinstance(crop, dict) else crop))
    expected = served.models["tiny"].classifier.preprocess(photos["red"])
    np.testing.assert_array_equal(preview, expected)


def test_benign_finding_gets_low_risk_and_no_urgent_visit(client, photos):
    _, risk, advice, _, raw = analyse(client, photos["green"])

    assert raw["top"]["label"] == "grn"
    assert "risk-low" in risk
    assert "No urgent visit needed" in advice


@pytest.mark.parametrize(
    "kind", ["not_an_image", "corrupt_jpeg", "truncated_jpeg", "zero_bytes", "one_pixel", "too_many_pixels"]
)
def test_bad_upload_gets_a_friendly_message_and_the_app_keeps_serving(client, bad_uploads, photos, kind):
    path = bad_uploads[kind]
    with pytest.raises(AppError) as refused:
        classify(client, path)
    message = str(refused.value)
    assert path.name in message
    assert "/tmp" not in message and "gradio" not in message.lower()  # no server paths leak

    label, risk, advice, crop, raw = analyse(client, path)
    assert not label and crop is None and risk == ""  # nothing that could read as a finding
    assert "I could not read this file" in advice and path.name in advice
    assert raw == {"error": message}

    assert classify(client, photos["blue"])["top"]["label"] == "blu"


def test_oversized_image_names_the_pixel_limit(client, bad_uploads):
    with pytest.raises(AppError, match=f"{TEST_MAX_PIXELS:,}"):
        classify(client, bad_uploads["too_many_pixels"])


def test_file_over_the_upload_limit_is_refused_and_the_app_keeps_serving(client, tmp_path, photos):
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    big = tmp_path / "big_noise.png"
    Image.fromarray(noise).save(big)  # ~3 MB of incompressible pixels, over the 1 MB test limit
    with pytest.raises(Exception, match="(?i)too large|413|size"):
        classify(client, big)
    assert classify(client, photos["red"])["top"]["label"] == "rdl"


def test_abstaining_model_says_it_cannot_tell_instead_of_a_confident_label(client, photos):
    result = classify(client, photos["red"], model="tiny-unsure")
    assert result["abstained"] is True and "unsure" in result["abstain_reason"]

    label, risk, advice, crop, _ = analyse(client, photos["red"], model="tiny-unsure")
    assert label["label"] == "I can't tell" and not label.get("confidences")  # nothing reads as confident
    assert risk == ""
    assert "I can't tell from this photo" in advice and "unsure" in advice
    assert crop is not None  # the patient still sees what the model looked at


def test_switching_models_on_an_empty_page_leaves_an_answer_being_made_alone(served):
    # A photo uploaded while the model switched is answered by its own event; the switch's answer for
    # the empty page could land last and put the upload prompt back over it (read from a slow browser run).
    import gradio as gr

    from gradio_app.service import Service

    updates = Service(served.models, served.config).analyse_again(None, "tiny-unsure")
    assert len(updates) == 5 and all(update == gr.skip() for update in updates)


def test_heic_photo_from_an_iphone_is_read(client, tmp_path, tiny_images):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC support needs pillow-heif")
    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(tiny_images["red"]).resize((96, 80)).save(path, format="HEIF", quality=95)

    assert classify(client, path)["top"]["label"] == "rdl"


def test_exif_orientation_is_honoured_in_what_the_model_sees(client, tmp_path):
    upright = np.zeros((64, 64, 3), dtype=np.uint8)
    upright[:32] = (200, 40, 50)  # red top half
    upright[32:] = (50, 60, 200)  # blue bottom half
    # A camera held sideways stores the pixels rotated and an EXIF tag saying how to turn them back.
    stored = Image.fromarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)

    _, _, _, crop, _ = analyse(client, path)
    preview = photo_array(Path(crop["path"] if isinstance(crop, dict) else crop)).astype(int)
    assert preview[2, 16, 0] > 150 and preview[2, 16, 2] < 100  # top is red
    assert preview[-3, 16, 2] > 150 and preview[-3, 16, 0] < 100  # bottom is blue


def test_uploads_are_swept_from_the_server(tiny_bundle, photos, tmp_path):
    import gradio
    from gradio_client import Client

    from gradio_app.app import AppConfig, build_demo, launch_options, load_models

    config = AppConfig(delete_cache=(1, 3))  # the production default sweeps every minute
    demo = build_demo(load_models([tiny_bundle]), config)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    try:
        unique = tmp_path / "private_spot_7f3a.jpg"
        unique.write_bytes(
            photos["red"].read_bytes() + b"7f3a"
        )  # unique bytes: uploads are content-addressed
        Client(url, verbose=False, analytics_enabled=False).predict(
            handle_file(str(unique)), api_name="/classify"
        )
        on_server = lambda: list(Path(gradio.utils.get_upload_folder()).rglob(unique.name))  # noqa: E731
        assert on_server(), "the upload should be on the server while it is fresh"
        deadline = time.monotonic() + 10
        while on_server() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert on_server() == []
    finally:
        demo.close()


def test_pasted_image_sent_as_a_data_url_is_classified(served, photos):
    import base64
    import json

    import httpx

    data_url = "data:image/jpeg;base64," + base64.b64encode(photos["green"].read_bytes()).decode()
    payload = {"url": data_url, "orig_name": "pasted.jpg", "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(base_url=served.url, timeout=30) as http:
        call = http.post("gradio_api/call/classify", json={"data": [payload, "tiny"]})
        call.raise_for_status()
        stream = http.get(f"gradio_api/call/classify/{call.json()['event_id']}").text
    assert "event: complete" in stream, stream
    result = json.loads(stream.split("data:", 1)[1].strip().splitlines()[0])[0]
    assert result["top"]["label"] == "grn"


def call_over_http(url: str, api: str, photo) -> tuple[str, object]:
    """Gradio's HTTP API without gradio_client: ``photo`` is sent as it is. Returns (event, data)."""
    import json

    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        call = http.post(f"gradio_api/call/{api}", json={"data": [photo, "tiny"]})
        call.raise_for_status()
        stream = http.get(f"gradio_api/call/{api}/{call.json()['event_id']}").text
    event = stream.split("event:", 1)[1].split("\n", 1)[0].strip()
    return event, json.loads(stream.split("data:", 1)[1].strip().splitlines()[0])


@pytest.mark.parametrize("api", ["classify", "analyse"])
def test_a_path_string_instead_of_an_upload_says_what_to_send(client, api):
    with pytest.raises(AppError) as refused:
        client.predict("/etc/passwd", "tiny", api_name=f"/{api}")
    message = str(refused.value)
    assert "'/etc/passwd'" in message and "must be a file uploaded" in message
    assert "handle_file" in message and "/gradio_api/upload" in message  # what to send instead


@pytest.mark.parametrize("api", ["classify", "analyse"])
@pytest.mark.parametrize("meta", [True, False], ids=["file_data", "bare_dict"])
def test_a_server_file_that_was_not_uploaded_is_refused_not_read(served, photos, api, meta):
    # A real image on the server, outside Gradio's upload folder: answering it would show a caller
    # any picture on the server (the bare dict skips Gradio's own upload-folder check).
    photo = {"path": str(photos["red"]), "orig_name": "x.jpg"}
    if meta:
        photo["meta"] = {"_type": "gradio.FileData"}
    event, data = call_over_http(served.url, api, photo)
    assert event == "error", data
    assert str(photos["red"]) in data["error"] and "not an upload on this server" in data["error"]
    assert "/gradio_api/upload" in data["error"]


@pytest.mark.parametrize("sent", [42, ["a.jpg"]], ids=["number", "list"])
def test_a_value_that_is_no_file_at_all_says_what_to_send(served, sent):
    event, data = call_over_http(served.url, "classify", sent)
    assert event == "error" and data["error"], data  # was {"error": null}
    assert "must be a file uploaded" in data["error"] and "handle_file" in data["error"]


def test_every_event_has_an_api_name(served):
    names = [fn.api_name for fn in served.demo.fns.values()]
    assert all(names), names
    assert {"classify", "analyse", "explain"} <= set(names)


def test_real_dermoscopy_photo_in_expected_json_out(client):
    images = SHARED / "data" / "ham10000-fullres-sample" / "images"
    if not images.is_dir():
        pytest.skip(f"shared data not found at {images} (a fresh clone has no ../shared)")
    photo = sorted(images.glob("*.jpg"))[0]
    result = classify(client, photo)
    assert result["source"] == photo.name
    assert {c["label"] for c in result["categories"]} == {"rdl", "grn", "blu"}
    assert 0.0 <= result["malignant_probability"] <= 1.0


def test_startup_makes_no_outside_network_calls(tiny_bundle, monkeypatch):
    from gradio_app.app import build_demo, launch_options, load_models

    outside = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    local = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in local:
            outside.append(address)
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in local and host is not None:
            outside.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    demo = build_demo(load_models([tiny_bundle]))
    try:
        demo.launch(
            server_name="127.0.0.1",
            server_port=free_port(),
            prevent_thread_lock=True,
            quiet=True,
            **launch_options(),
        )
    finally:
        demo.close()
    assert outside == []
