"""The legacy /check_frame_batch API, as the old meeting client used it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.anyio
OLD_CLIENT_QUERY = "model_type=custom&threshold=0.75&debug=false&yolo_conf_threshold=0.8"


async def test_old_client_gets_per_frame_mock_probabilities(
    serve: Any, png: Any, form: Any
) -> None:
    async with serve() as client:
        frames = [png(51), png(204), png(102, size=5)]
        r = await client.post(f"/check_frame_batch?{OLD_CLIENT_QUERY}", files=form(frames))
    assert r.status_code == 200
    body = r.json()
    assert body["probs"] == pytest.approx([0.2, 0.8, 0.4], abs=1e-6)
    assert body["confidence"] == pytest.approx(1.4 / 3, abs=1e-6)
    assert body["pred_label"] == "REAL"  # mean 0.467 is below 0.75
    assert body["num_frames"] == 3 and body["num_scored"] == 3


async def test_label_is_fake_when_the_mean_reaches_the_threshold_ties_included(
    serve: Any, png: Any, form: Any
) -> None:
    async with serve(bias=0.0) as client:
        above = await client.post("/check_frame_batch?threshold=0.7", files=form([png(255)]))
        tie_low = await client.post("/check_frame_batch?threshold=0.0", files=form([png(0)]))
        tie_high = await client.post("/check_frame_batch?threshold=1.0", files=form([png(255)]))
        below = await client.post("/check_frame_batch?threshold=1.0", files=form([png(254)]))
        nothing = await client.post(
            "/check_frame_batch?threshold=0.0", files=form([b"\xff\xd8\xffx"])
        )
    assert above.json()["pred_label"] == "FAKE"
    assert tie_low.json()["pred_label"] == "FAKE"  # 0.0 >= 0.0, as the old server said
    assert tie_high.json()["pred_label"] == "FAKE"
    assert below.json()["pred_label"] == "REAL"
    assert nothing.json() == {  # no usable frame stays REAL, whatever the threshold
        "pred_label": "REAL",
        "confidence": 0.0,
        "probs": [],
        "num_frames": 1,
        "num_scored": 0,
    }


async def test_ping_answers_pong_even_while_the_model_loads(serve: Any, gated_backend: Any) -> None:
    backend = gated_backend("m1")
    backend.warmup = lambda: backend.gate.wait(20)
    async with serve(impl=backend, wait_ready=False) as client:
        r = await client.get("/ping")
        backend.gate.set()
    assert r.status_code == 200 and r.json() == {"message": "pong"}


def one_file(data: bytes, content_type: str = "image/jpeg") -> list[Any]:
    return [("file", ("frame.jpg", data, content_type))]


async def test_check_frame_scores_the_face_of_one_image_like_the_old_server(
    serve: Any, face_jpeg: bytes, form: Any
) -> None:
    async with serve() as client:
        r = await client.post(f"/check_frame?{OLD_CLIENT_QUERY}", files=one_file(face_jpeg))
        batch = await client.post(
            "/check_frame_batch?recrop=true", files=form([face_jpeg], "image/jpeg")
        )
        low = await client.post("/check_frame?threshold=0.0", files=one_file(face_jpeg))
        uncropped = await client.post("/check_frame?recrop=false", files=one_file(face_jpeg))
        whole = await client.post("/check_frame_batch", files=form([face_jpeg], "image/jpeg"))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"pred_label", "fake_prob"}
    (face_prob,) = batch.json()["probs"]  # the same face crop as the batch route's
    assert body["fake_prob"] == pytest.approx(face_prob, abs=1e-7)
    assert body["pred_label"] == ("FAKE" if face_prob >= 0.75 else "REAL")
    assert low.json()["pred_label"] == "FAKE"
    assert uncropped.json()["fake_prob"] == pytest.approx(whole.json()["probs"][0], abs=1e-7)


@pytest.mark.parametrize(
    ("files", "status", "needle"),
    [
        ("no-face", 400, "could not find a face in the image"),
        ("undecodable", 400, "cannot decode image"),
        ([("file", ("a.txt", b"hello", "text/plain"))], 415, "text/plain"),
        ([("file", ("a.gif", b"GIF89a....", "image/gif"))], 415, "image/gif"),
        ([("files", ("a.png", b"\x89PNG", "image/png"))], 400, "multipart field 'file', got 0"),
        ("two", 400, "got 2"),
        ([("file", ("a.png", b"", "image/png"))], 400, "frame 0 is empty"),
    ],
)
async def test_check_frame_refuses_bad_input_with_a_json_4xx(
    serve: Any, png: Any, files: Any, status: int, needle: str
) -> None:
    if files == "no-face":
        files = one_file(png(128, 64), "image/png")
    elif files == "undecodable":
        files = one_file(png(128, 64)[:-30], "image/png")
    elif files == "two":
        files = one_file(png(1), "image/png") + one_file(png(2), "image/png")
    async with serve() as client:
        r = await client.post("/check_frame", files=files)
        ok = await client.post("/check_frame?recrop=false", files=one_file(png(51), "image/png"))
    assert r.status_code == status
    assert needle in r.json()["error"]
    assert ok.json() == {"pred_label": "REAL", "fake_prob": pytest.approx(0.2)}


async def test_mock_bias_shifts_and_clips_probabilities(serve: Any, png: Any, form: Any) -> None:
    async with serve(bias=0.5) as client:
        r = await client.post("/check_frame_batch", files=form([png(51), png(204)]))
    assert r.json()["probs"] == pytest.approx([0.7, 1.0], abs=1e-6)


async def test_corrupt_frames_are_left_out_and_server_keeps_serving(
    serve: Any, png: Any, form: Any
) -> None:
    truncated = png(200, size=32)[:-30]
    async with serve() as client:
        r = await client.post("/check_frame_batch", files=form([png(51), truncated, png(153)]))
        assert r.status_code == 200
        assert r.json()["probs"] == pytest.approx([0.2, 0.6], abs=1e-6)
        assert r.json()["num_frames"] == 3
        none = await client.post("/check_frame_batch", files=form([truncated]))
        assert none.json() == {
            "pred_label": "REAL",
            "confidence": 0.0,
            "probs": [],
            "num_frames": 1,
            "num_scored": 0,
        }
        again = await client.post("/check_frame_batch", files=form([png(255)]))
        assert again.json()["probs"] == pytest.approx([1.0])


@pytest.mark.parametrize(
    ("files", "status", "needle"),
    [
        ([], 400, "no frames"),
        ([("files", ("a.txt", b"hello", "text/plain"))], 415, "text/plain"),
        ([("files", ("a.jpg", b"not really a jpeg", "image/jpeg"))], 415, "not a JPEG or PNG"),
        ([("files", ("a.gif", b"GIF89a....", "image/gif"))], 415, "image/gif"),
        ([("files", ("a.png", b"", "image/png"))], 400, "frame 0 is empty"),
    ],
)
async def test_bad_uploads_are_refused_with_a_json_error(
    serve: Any, png: Any, form: Any, files: Any, status: int, needle: str
) -> None:
    async with serve() as client:
        if files:
            r = await client.post("/check_frame_batch", files=files)
        else:  # multipart body with only a non-file field
            r = await client.post("/check_frame_batch", data={"x": "1"}, files={"other": b"x"})
        assert r.status_code == status
        assert needle in r.json()["error"]
        ok = await client.post("/check_frame_batch", files=form([png(51)]))
        assert ok.json()["probs"] == pytest.approx([0.2])


async def test_a_non_multipart_body_is_415_a_bad_query_400(serve: Any, png: Any, form: Any) -> None:
    async with serve() as client:
        raw = await client.post(
            "/check_frame_batch", content=b"{}", headers={"content-type": "application/json"}
        )
        bad_threshold = await client.post("/check_frame_batch?threshold=abc", files=form([png(1)]))
        bad_type = await client.post("/check_frame_batch?model_type=huge", files=form([png(1)]))
    # 415 naming the content type, as the gateway answers (it was 400 before the
    # multipart check became one, in wma_wire.formdata).
    assert raw.status_code == 415 and "multipart" in raw.json()["error"]
    assert "'application/json'" in raw.json()["error"]
    assert bad_threshold.status_code == 400 and "threshold" in bad_threshold.json()["error"]
    assert bad_type.status_code == 400 and "model_type" in bad_type.json()["error"]


def _part(frame: bytes) -> bytes:
    head = b'--XX\r\nContent-Disposition: form-data; name="files"; filename="f.png"\r\n'
    return head + b"Content-Type: image/png\r\n\r\n" + frame + b"\r\n"


@pytest.mark.parametrize(
    ("cut", "needle"),
    [
        (lambda frame: b"", "the body is empty"),
        (lambda frame: _part(frame), "closing boundary"),  # no closing boundary at all
        (lambda frame: _part(frame) + b"--XX", "closing boundary"),  # boundary without "--"
        (lambda frame: _part(frame)[: -len(frame) // 4 - 2], "ends inside part 0"),
        (lambda frame: _part(frame) + b"--XX--\r\n", None),  # the complete body, for contrast
    ],
    ids=["empty", "no-closing-boundary", "unclosed-boundary", "part-never-ends", "complete"],
)
async def test_a_multipart_body_that_does_not_end_properly_is_refused_as_malformed(
    serve: Any, png: Any, cut: Any, needle: str | None
) -> None:
    headers = {"content-type": "multipart/form-data; boundary=XX"}
    async with serve() as client:
        r = await client.post("/check_frame_batch", content=cut(png(51)), headers=headers)
    if needle is None:
        assert r.status_code == 200 and r.json()["probs"] == pytest.approx([0.2])
    else:
        assert r.status_code == 400
        error = r.json()["error"]
        assert error.startswith("malformed multipart body: ") and needle in error


async def test_a_part_content_type_that_is_not_utf8_is_refused_as_415(serve: Any, png: Any) -> None:
    body = _part(png(51)).replace(b"image/png", b"image/p\xffng") + b"--XX--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=XX"}
    async with serve() as client:
        r = await client.post("/check_frame_batch", content=body, headers=headers)
    assert r.status_code == 415 and "not image/jpeg or image/png" in r.json()["error"]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary="])
async def test_multipart_without_a_boundary_is_a_400_naming_the_boundary(
    serve: Any, png: Any, content_type: str
) -> None:
    body = _part(png(51)) + b"--XX--\r\n"
    async with serve() as client:
        r = await client.post(
            "/check_frame_batch", content=body, headers={"content-type": content_type}
        )
    assert r.status_code == 400
    assert r.json()["error"] == (
        "malformed multipart body: the content type has no boundary parameter"
    )


@pytest.mark.parametrize(
    ("limits", "frames", "needle"),
    [
        ({"max_files": 2, "max_queue_frames": 8}, [51, 51, 51], "max_files=2"),
        ({"max_file_bytes": 200}, [("big", 64)], "max_file_bytes=200"),
        ({"max_request_bytes": 400, "max_file_bytes": 300}, [51] * 8, "max_request_bytes=400"),
        ({"max_frame_pixels": 100}, [("big", 11)], "max_frame_pixels=100"),
        ({}, ["bomb"], "max_frame_pixels"),
    ],
)
async def test_each_limit_answers_413_naming_it(
    serve: Any,
    png: Any,
    encode_image: Any,
    form: Any,
    bomb_png: bytes,
    limits: Any,
    frames: Any,
    needle: str,
) -> None:
    import numpy as np

    def make(spec: Any) -> bytes:
        if spec == "bomb":
            return bomb_png
        if isinstance(spec, tuple):
            rng = np.random.default_rng(0)
            return encode_image(rng.integers(0, 256, (spec[1], spec[1], 3)))
        return png(spec)  # type: ignore[no-any-return]

    async with serve(**limits) as client:
        r = await client.post("/check_frame_batch", files=form([make(s) for s in frames]))
        assert r.status_code == 413
        assert needle in r.json()["error"]
        ok = await client.post("/check_frame_batch", files=form([png(51)]))
        assert ok.status_code == 200


async def test_debug_writes_frames_only_to_the_configured_debug_dir(
    serve: Any, png: Any, form: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with serve() as client:
        r = await client.post("/check_frame_batch?debug=true", files=form([png(51)]))
    assert r.status_code == 200
    assert list(tmp_path.rglob("*")) == []
    debug_dir = tmp_path / "debug"
    async with serve(debug_dir=debug_dir) as client:
        await client.post("/check_frame_batch?debug=false", files=form([png(51)]))
        assert not debug_dir.exists()
        await client.post("/check_frame_batch?debug=true", files=form([png(51), png(9)]))
    assert len(list(debug_dir.glob("m1-*.png"))) == 2


async def test_recrop_scores_the_face_and_drops_faceless_frames(
    serve: Any, png: Any, face_jpeg: bytes, form: Any
) -> None:
    async with serve() as client:
        plain = await client.post("/check_frame_batch", files=form([face_jpeg], "image/jpeg"))
        crop = await client.post(
            "/check_frame_batch?recrop=true", files=form([face_jpeg, png(128, 64)], "image/jpeg")
        )
    assert crop.status_code == 200
    assert crop.json()["num_scored"] == 1  # the uniform frame has no face
    (face_prob,) = crop.json()["probs"]
    assert 0.0 < face_prob < 1.0
    assert face_prob != pytest.approx(plain.json()["probs"][0], abs=1e-3)
