"""POST /v1/audio/speech (audio bytes, streamed) and /v1/audio/transcriptions (multipart upload)."""
from flask import Blueprint, Response, request

from deltallm.api import metering
from deltallm.api.common import check_model_access, gateway, model_request, new_call
from deltallm.errors import InvalidRequest
from deltallm.schemas.embeddings import SPEECH_FORMATS, speech_request

bp = Blueprint("audio", __name__)
TRANSCRIPTION_FORMATS = {"json", "text", "srt", "verbose_json", "vtt"}


@bp.post("/v1/audio/speech")
@bp.post("/audio/speech")
def speech():
    body, call = model_request(speech_request)
    call.units["characters"] = len(body["input"])  # speech is billed per character
    audio, content_type = gateway().router.run(call, body["model"], lambda d: d.adapter.speech(call, body))
    fallback = SPEECH_FORMATS[body.get("response_format") or "mp3"]
    return Response(audio, content_type=content_type or fallback, direct_passthrough=True)


@bp.post("/v1/audio/transcriptions")
@bp.post("/audio/transcriptions")
def transcriptions():
    request.max_content_length = gateway().max_transcription_bytes
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidRequest("Missing required parameter: 'file' (a multipart upload).", param="file")
    fields = [(name, value) for name in request.form for value in request.form.getlist(name)]
    model = request.form.get("model")
    if not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if request.form.get("response_format", "json") not in TRANSCRIPTION_FORMATS:
        raise InvalidRequest(f"Invalid value for 'response_format': must be one of "
                             f"{', '.join(sorted(TRANSCRIPTION_FORMATS))}", param="response_format")
    check_model_access(model)
    call = new_call()
    metering.admit(call, model, {"model": model})
    file = (upload.filename, upload.read(), upload.mimetype or "application/octet-stream")
    content, content_type = gateway().router.run(
        call, model, lambda d: d.adapter.transcription(call, fields, file))
    return Response(content, content_type=content_type or "application/json")
