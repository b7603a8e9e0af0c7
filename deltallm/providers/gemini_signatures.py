"""Gemini thought signatures kept server-side, so the tool-call ids clients echo back stay short."""
import threading
import uuid
from collections import OrderedDict

# Gemini 3 refuses a history functionCall without the thoughtSignature it came with (400 "missing a
# thought_signature"). Signatures run to kilobytes, and the call ids a client echoes must fit every
# upstream of a mixed group (Bedrock toolUseId <= 64 characters, OpenAI 40), so the id stays short
# and the signature is remembered here. A call this worker did not see (another worker, a restart,
# another vendor's history) goes back with Google's documented placeholder that skips validation.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"
MAX_SIGNATURES = 20000  # bounded: one entry per signed tool call, oldest forgotten first

_signatures = OrderedDict()
_lock = threading.Lock()


def new_call_id(call, signature):
    """The OpenAI tool-call id for a Gemini functionCall (its own id when short), remembering its signature."""
    own = call.get("id")
    call_id = own if isinstance(own, str) and 0 < len(own) <= 40 else "call_" + uuid.uuid4().hex[:24]
    if isinstance(signature, str) and signature:
        with _lock:
            _signatures[call_id] = signature
            _signatures.move_to_end(call_id)
            while len(_signatures) > MAX_SIGNATURES:
                _signatures.popitem(last=False)
    return call_id


def signature_for(tool_call_id):
    """The signature a history functionCall goes back with: its own, or the placeholder."""
    with _lock:
        return _signatures.get(tool_call_id, FOREIGN_SIGNATURE)
