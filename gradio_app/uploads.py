"""What callers send as a photo: refusing what is not an upload, reading it, and naming it in messages.

Gradio checks file inputs before a handler runs; :class:`CheckedBlocks` turns its refusals into messages
that say what to send instead. The handlers (``gradio_app.service``) read an upload with
:func:`upload_source` and name it with :func:`display_name`, never with the server's temporary path.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder, is_in_or_equal

from edge.errors import ImageError
from gradio_app import texts


class CheckedBlocks(gr.Blocks):
    """``gr.Blocks`` that tells an API caller whose image input is not an upload what to send instead.

    Gradio checks file inputs before any handler runs, and with ``show_error=False`` its refusals (a
    path outside its upload folder, a string instead of a file dict) reach the caller as
    ``{"error": null}``. And a file dict without Gradio's ``meta`` skips its upload-folder check, which
    would let a caller have any image on the server read and shown back; this refuses that too.
    """

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        explicit_call = kwargs.get("explicit_call", args[1] if len(args) > 1 else False)
        images = [
            (block, value) for block, value in zip(block_fn.inputs, inputs) if isinstance(block, gr.Image)
        ]
        if not explicit_call:  # a call from the server's own code may pass its own files, as in Gradio
            for block, value in images:
                path = value.get("path") if isinstance(value, dict) else None
                if path is not None and not (
                    isinstance(path, str) and is_in_or_equal(path, get_upload_folder())
                ):
                    received = f"the path {path!r}, which is not an upload on this server"
                    raise gr.Error(texts.not_an_upload(_input_label(block), received), print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except (InvalidPathError, pydantic.ValidationError) as error:
            refused = _refused_image(images, error)
            if refused is None:
                raise
            block, value = refused
            raise gr.Error(
                texts.not_an_upload(_input_label(block), _describe(value)), print_exception=False
            ) from error


def _refused_image(images: list[tuple[Any, Any]], error: Exception) -> tuple[Any, Any] | None:
    """The image input (component, value) that Gradio's ``error`` is about, or None if it is none of them."""
    if isinstance(error, pydantic.ValidationError):
        # Pydantic names the model that failed: the component's data model (ImageData for gr.Image).
        images = [
            (block, value)
            for block, value in images
            if getattr(getattr(block, "data_model", None), "__name__", None) == error.title
        ]
    return images[0] if images else None


def _input_label(block: Any) -> str:
    return f"The input {block.label!r}" if block.label else "The image input"


def _describe(value: Any) -> str:
    """What a caller sent, short, for an error message."""
    if isinstance(value, str):
        return f"the string {value[:200]!r}"
    if isinstance(value, dict):
        return f"the path {value['path']!r}" if "path" in value else f"a dict with keys {sorted(value)[:10]}"
    return f"{type(value).__name__} {str(value)[:80]!r}"


def upload_source(upload: dict[str, Any]) -> str | bytes:
    """The uploaded file's path, or the bytes of a ``data:`` URL (how some browsers paste images)."""
    path, url = upload.get("path"), upload.get("url") or ""
    if path:
        return path
    if url.startswith("data:") and "," in url:
        header, _, data = url.partition(",")
        try:
            return (
                base64.b64decode(data) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(data)
            )
        except ValueError as error:
            raise ImageError(f"{display_name(upload)}: the pasted image data is not valid base64") from error
    raise ImageError(f"{display_name(upload)}: the upload did not arrive; try again")


def display_name(upload: dict[str, Any]) -> str:
    """The patient's file name, or "your photo" when the browser sent none."""
    return upload.get("orig_name") or "your photo"


def friendly_message(error: ImageError, upload: dict[str, Any]) -> str:
    """The ImageError's message with the server's temporary path replaced by the patient's file name."""
    message = str(error)
    path = upload.get("path")
    if path:
        message = message.replace(str(path), display_name(upload))
    if "file not found" in message:
        message = (
            f"{display_name(upload)} is no longer on the server (photos are deleted a few minutes "
            "after their analysis); upload it again"
        )
    return message
