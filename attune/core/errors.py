"""The one exception tree of Attune; every error the project raises on purpose is one of these.

    AttuneError
    ├── ConfigError                 bad config.yaml key, type, range or environment override
    ├── AudioInputError             audio that cannot be used: empty, NaN/Inf, malformed WAV, bad rate
    ├── OutputPathError             an output file that cannot be written (missing folder, a directory)
    ├── ProtocolError               a client message that breaks the WebSocket protocol
    ├── ReferenceBankError          a missing or corrupt emotion reference (WAV or manifest)
    ├── PersonaError                a persona or voice sample that breaks the contract (``code``, ``field``)
    ├── StoreError                  the persona database cannot be opened, read or migrated (names the file)
    └── BackendError                an engine failed; ``retryable`` says whether trying again may help
        ├── BackendUnavailable      an optional dependency or model file is missing (``install_hint``)
        ├── AudioDeviceError        a microphone or speaker was lost or cannot be opened (it may come back)
        ├── EmotionError
        ├── ASRError
        ├── LLMError
        │   ├── ServerBusy          too many turns already wait for the shared LLM (``retry_after_s``)
        │   └── LLMStalled          no piece of a reply within the shared LLM's stall bound: its slot was given up
        └── TTSError

A backend error is retryable when the same request may succeed later or on the next provider (a timeout, a
dropped connection); it is not when the request itself is wrong (empty text, NaN audio).
"""

from __future__ import annotations


class AttuneError(Exception):
    """Base of every error Attune raises on purpose."""


class ConfigError(AttuneError):
    """A configuration value is unknown, of the wrong type or out of range; the message names the key."""


class AudioInputError(AttuneError, ValueError):
    """Audio that cannot be analysed or transcribed: the message says what is wrong with it."""


class OutputPathError(AttuneError):
    """An output path that cannot be written; raised before the work that would fill it starts."""


class ProtocolError(AttuneError):
    """A client message that breaks the protocol; ``code`` is the error code sent to the client."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class ReferenceBankError(AttuneError):
    """An emotion reference is missing, unreadable or fails its SHA-256 check; the message names the file."""


class PersonaError(AttuneError):
    """A persona body or voice sample that breaks the persona API's contract. ``code`` is the API's error code
    (``invalid``, ``rejected``, ``not_found``, ``exists``, ...), ``field`` the dotted field or rule it names."""

    def __init__(self, message: str, code: str = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class StoreError(AttuneError):
    """The persona database cannot be opened, read or migrated; the message names the file. The file is kept."""


class BackendError(AttuneError):
    """An engine failed. ``retryable`` says whether the same request may succeed if tried again."""

    def __init__(self, message: str, *, retryable: bool = False, backend: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.backend = backend


class BackendUnavailable(BackendError):
    """A backend cannot run here: a dependency or model file is missing. ``install_hint`` says how to fix it."""

    def __init__(self, message: str, *, install_hint: str = "", backend: str = "") -> None:
        full = f"{message} (install with: {install_hint})" if install_hint else message
        super().__init__(full, retryable=False, backend=backend)
        self.install_hint = install_hint


class AudioDeviceError(BackendError):
    """A microphone or speaker cannot be opened or stopped delivering audio; retryable (it may be plugged in)."""

    def __init__(self, message: str, *, backend: str = "sounddevice") -> None:
        super().__init__(message, retryable=True, backend=backend)


class EmotionError(BackendError):
    """The emotion backend failed on audio it accepted."""


class ASRError(BackendError):
    """Speech recognition failed."""


class LLMError(BackendError):
    """The language model failed or its server could not be reached."""


class TTSError(BackendError):
    """Speech synthesis failed."""


class LLMStalled(LLMError):
    """A generation gave no piece within the shared LLM's stall bound and gave its slot up (``llm_failed``)."""

    def __init__(self, message: str, *, backend: str = "shared-llm") -> None:
        super().__init__(message, retryable=False, backend=backend)


class ServerBusy(LLMError):
    """The shared LLM has as many turns waiting as it can answer in time: this one is refused at once rather
    than left waiting. ``retry_after_s`` estimates when a place frees; ``code`` is the error code clients get."""

    code = "server_busy"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retryable=True, backend="shared-llm")
        self.retry_after_s = retry_after_s

