"""POST /v1/audio/speech (audio bytes, streamed), /v1/audio/transcriptions and /v1/audio/translations
(multipart uploads passed upstream as they arrive, see api.upload)."""
from flask import Blueprint, Response, request

from deltallm.api import metering
from deltallm.api.body import BoundedInput
from deltallm.api.common import check_model_access, gateway, model_request, new_call
from deltallm.api.multipart import MultipartReader
from deltallm.api.upload import Form
from deltallm.errors import InvalidRequest
from deltallm.schemas.embeddings import SPEECH_FORMATS, speech_request

bp = Blueprint("audio", __name__)
TRANSCRIPTION_FORMATS = {"json", "text", "srt", "verbose_json", "vtt"}
# what OpenAI answers each response_format with
TEXT = "text/plain; charset=utf-8"
CONTENT_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": TEXT, "srt": TEXT,
                 "vtt": TEXT}
MIN_UPLOAD_RATE = 256 * 1024  # bytes a second a slow client may take to send its audio


@bp.post("/v1/audio/speech")
@bp.post("/audio/speech")
def speech():
    body, call = model_request(speech_request)
    call.units["characters"] = len(body["input"])  # speech is billed per character
    audio, content_type = gateway().router.run(call, body["model"], lambda d: d.adapter.speech(call, body))
    fallback = SPEECH_FORMATS[body.get("response_format") or "mp3"]
    return Response(audio, content_type=content_type or fallback, direct_passthrough=True)


def check_field(name, value):
    if name == "response_format" and value not in TRANSCRIPTION_FORMATS:
        raise InvalidRequest(f"Invalid value for 'response_format': must be one of "
                             f"{', '.join(sorted(TRANSCRIPTION_FORMATS))}", param="response_format")
    if name == "model":
        check_model_access(value)  # before any of the file goes upstream, when the model comes first


def audio_form(operation):
    """Read the form's fields, then run `operation(adapter, call, form)` while its file streams upstream."""
    gw = gateway()
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("Missing required parameter: 'file' (a multipart/form-data upload).", param="file")
    stream = request.environ.get("wsgi.input")
    if isinstance(stream, BoundedInput):
        # as long as the declared size needs at a slow client's rate (a chunked body: the limit's)
        length = min(request.content_length or gw.max_transcription_bytes, gw.max_transcription_bytes)
        stream.allow(stream.seconds + length / MIN_UPLOAD_RATE)
    form = Form(MultipartReader(request.environ, gw.max_transcription_bytes), check_field)
    try:
        model = form.get("model")
        check_model_access(model)
        call = new_call()
        metering.admit(call, model, {"model": model})
        content, content_type = gw.router.run(call, model, lambda d: operation(d.adapter, call, form))
    finally:
        form.close()
    fmt = form.get("response_format") or "json"
    return Response(content, content_type=CONTENT_TYPES.get(fmt) or content_type or "application/json")


@bp.post("/v1/audio/transcriptions")
@bp.post("/audio/transcriptions")
def transcriptions():
    return audio_form(lambda adapter, call, form: adapter.transcription(call, form))


@bp.post("/v1/audio/translations")
@bp.post("/audio/translations")
def translations():
    return audio_form(lambda adapter, call, form: adapter.translation(call, form))
