"""Which endpoints a deployment serves, from its `model_info.mode` (or, where unambiguous, its provider)."""
from deltallm.errors import InvalidRequest

# endpoint -> the mode a deployment must have to serve it (legacy completions and responses are chat)
ENDPOINT_MODES = {
    "/v1/chat/completions": "chat", "/v1/completions": "chat", "/v1/responses": "chat",
    "/v1/embeddings": "embedding", "/v1/images/generations": "image_generation",
    "/v1/audio/speech": "audio_speech", "/v1/audio/transcriptions": "audio_transcription",
    "/v1/audio/translations": "audio_transcription", "/v1/rerank": "rerank",
}
# LiteLLM's mode names that mean the chat endpoints
SAME_AS = {"completion": "chat", "responses": "chat"}
# providers whose every model has one mode (the adapter offers nothing else)
PROVIDER_MODES = {"anthropic": "chat"}
ARTICLE = {"embedding": "an embedding", "image_generation": "an image generation", "audio_speech": "a speech",
           "audio_transcription": "a transcription", "rerank": "a rerank", "chat": "a chat"}


def endpoint_mode(endpoint):
    return ENDPOINT_MODES.get(endpoint)


def mode_of(deployment):
    """The deployment's mode, or None when it is not known (then it may serve any endpoint)."""
    mode = deployment.model_info.get("mode") or PROVIDER_MODES.get(deployment.provider)
    return SAME_AS.get(mode, mode)


def serves(deployment, mode):
    found = mode_of(deployment)
    return mode is None or found is None or found == mode


def serving(group, mode, endpoint, model_name):
    """The deployments of `group` that serve `mode`; a 400 naming the model's mode when none does."""
    if mode is None:
        return group
    able = [d for d in group if serves(d, mode)]
    if not able:
        found = mode_of(group[0])
        raise InvalidRequest(f"The model `{model_name}` is {ARTICLE.get(found, found)} model (mode: {found}); "
                             f"it does not serve {endpoint or 'this endpoint'}.", param="model",
                             code="unsupported_model")
    return able
