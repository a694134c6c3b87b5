"""``LiveSettings.apply`` with a persona: the session's TTS and its speech cache's phrases (acknowledgements,
cached reply sentences) switch to the persona's voice (one shared cache, keyed by the persona's identity), and its
traits and strategy become the session's."""

from __future__ import annotations

from attune.agent.persona_model import PersonaRecord, VoiceConfig
from attune.agent.persona_voice import PersonaVoice
from attune.backends.tts.router import VoiceModelRouter
from attune.pipeline.phrases import PhraseVoice
from attune.pipeline.session_backends import ChosenPersona
from attune.transports.live_settings import LiveSettings
from attune.transports.protocol import SessionUpdate
from tests.fakes import Harness, ToneTTS

LAYER = "unit"


def test_a_persona_switches_the_voice_of_speech_and_cached_phrases() -> None:
    router = VoiceModelRouter({"piper": ToneTTS(22050)}, sample_rate=22050)
    phrases = PhraseVoice(router, None, 16000)
    session = Harness(tts=router, phrases=phrases).session()
    record = PersonaRecord(id="clinic", traits="You are Ada, calm and brief.", strategy="match",
                           voice=VoiceConfig(pitch=-2.0))
    voice = PersonaVoice(router, record.voice)
    live = LiveSettings()
    live.apply(SessionUpdate(persona_id="clinic"), session, router, persona=ChosenPersona(record, voice))
    b = session.backends.voice
    assert b.tts is voice and b.phrases.tts is voice
    assert b.phrases.cache is phrases.cache
    assert b.phrases.key("Okay.", "calm", None) != phrases.key("Okay.", "calm", None)
    assert session.settings.strategy == "match"
    assert "Ada" in session.settings.persona.system_text()
    assert live.describe(session)["persona_id"] == "clinic"


def test_persona_id_null_puts_the_configured_agent_back() -> None:
    """After a persona, ``{"persona_id": null}`` restores the configured agent: its persona text and strategy,
    the shared TTS, and the shared voice's cached phrases."""
    import json

    from attune.transports.protocol import NO_PERSONA, ClientEvent, parse_session_update

    router = VoiceModelRouter({"piper": ToneTTS(22050)}, sample_rate=22050)
    phrases = PhraseVoice(router, None, 16000)
    session = Harness(tts=router, phrases=phrases).session()
    before = session.settings
    record = PersonaRecord(id="clinic", traits="You are Ada, calm and brief.", strategy="match",
                           voice=VoiceConfig(pitch=-2.0))
    live = LiveSettings()
    voice = PersonaVoice(router, record.voice)
    live.apply(SessionUpdate(persona_id="clinic"), session, router, persona=ChosenPersona(record, voice))
    assert session.settings.strategy == "match" != before.strategy
    update = parse_session_update(ClientEvent("session.update", json.loads('{"session": {"persona_id": null}}')), ())
    assert update.persona_id == NO_PERSONA
    assert parse_session_update(ClientEvent("session.update", {"session": {}}), ()).persona_id is None
    live.apply(update, session, router)
    b = session.backends.voice
    assert b.tts is router and b.phrases is phrases
    assert session.settings.strategy == before.strategy and session.settings.persona == before.persona
    assert live.describe(session)["persona_id"] is None
