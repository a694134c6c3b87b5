"""One ``/v1/realtime`` WebSocket driving one ``Session``: the OpenAI Realtime wire format over the same
conversation engine as ``/ws``. It is ``Connection`` (the same reader, bounded outbox, writer, clock keeper and
timers) with its own client events (``realtime_protocol.py`` parses them) and its own translation of the session's
events into the Realtime lifecycle: ids, ``conversation.item.*``, ``response.output_item/content_part.*``, base64
audio deltas, ``response.done`` with status and usage. ``emotion.*`` events pass through as Attune's extensions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE, resample
from attune.core.errors import AttuneError, ProtocolError
from attune.core.events import SessionEvent
from attune.pipeline.session_backends import SessionChange
from attune.transports import protocol as proto
from attune.transports import realtime_protocol as rt
from attune.transports import realtime_session as rs
from attune.transports.connection import Connection, _Out

SWEEP_S = 0.25  # s between checks for turns that ended with nothing to answer
ITEM_DONE_STATUS = {"completed": "completed", "failed": "incomplete", "cancelled": "incomplete"}
CANCEL_REASON = {"barge_in": "turn_detected", "client_cancel": "client_cancelled", "user_text": "client_cancelled",
                 "session_closed": "client_cancelled", "premature_commit": "turn_detected"}


@dataclass
class _Response:
    resp_id: str
    turn: int
    modality: str
    plan: dict[str, Any]
    item_id: str | None = None
    transcript: list[str] = field(default_factory=list)
    spans: dict[int, rs.Span] = field(default_factory=dict)
    audio_ms: float = 0.0
    done: bool = False


@dataclass
class _Item:
    role: str
    text: str = ""
    response: _Response | None = None


class RealtimeConnection(Connection):
    """``await RealtimeConnection(...).run()``; ``model``: the client's ``?model=``, reported back."""

    def __init__(self, *args: Any, model: str = "attune", predicted: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids = rt.Ids()
        self.state = rs.RealtimeState(base=self.session.settings, model=model, session_id=self.session_id)
        rs.start(self.session, self.state, predicted=predicted)
        self.live.apply(proto.SessionUpdate(input_sample_rate=rt.REALTIME_RATE), self.session, self.shared_tts)
        self.state.base = self.session.settings
        self.items: dict[str, _Item] = {}
        self._last_item: str | None = None
        self._speech_item: str | None = None  # the user item the current speech will become
        self._awaiting_transcript: list[str] = []  # committed audio items, oldest first
        self._spoken_item: str | None = None  # the last user item the server's turn detection committed
        self._typed: list[tuple[str, str]] = []  # (item_id, text) typed items not yet answered
        self._typed_turns: list[str] = []  # texts submitted to the session, whose transcript event is not an item's
        self._responses: dict[int, _Response] = {}
        self._next_modality: str | None = None
        self._last_transcript_item: str | None = None
        self._requested = False  # a response.create started a reply whose response.created has not come

    # ---- output ----
    def send_json(self, obj: dict[str, Any]) -> None:
        if "event_id" not in obj:
            obj = {"type": obj.get("type"), "event_id": self.ids.new("event"),
                   **{k: v for k, v in obj.items() if k != "type"}}
        self._enqueue(_Out(proto.dumps(obj)))

    def send_error(self, code: str, message: str, *, retryable: bool = False, param: str | None = None,
                   event_id: str | None = None, error_type: str = rt.INVALID) -> None:
        self.metrics.errors.labels(code).inc()
        self.send_json(rt.error(self.ids, code, message, param=param, event_id=event_id, error_type=error_type))

    def _describe(self) -> dict[str, Any]:
        return rs.describe(self.session, self.state, {"persona_id": self.live.persona_id,
                                                      "voices": list(self.voices)})

    def _greeting(self) -> None:
        self.send_json(rt.event(self.ids, "session.created", session=self._describe()))

    # ---- client -> session ----
    async def _on_audio(self, data: bytes) -> None:
        raise rt.RealtimeError("binary frames are not part of the Realtime protocol: send input_audio_buffer.append "
                               "with base64 audio", "binary_not_supported")

    async def _on_text(self, text: str) -> None:
        event_id = None
        try:
            msg = rt.parse_client(text)
            event_id = msg.event_id
            await self._dispatch(msg)
        except rt.RealtimeError as exc:
            self.send_error(exc.code, str(exc), param=exc.param, event_id=exc.event_id or event_id,
                            error_type=exc.error_type)
        except ProtocolError as exc:
            self.send_error(exc.code, str(exc), event_id=event_id)
        except AttuneError as exc:
            self.send_error("invalid_request", str(exc), event_id=event_id)

    async def _dispatch(self, msg: rt.ClientMessage) -> None:
        s, d = self.session, msg.data
        if msg.type == "input_audio_buffer.append":
            await self._append(d.get("audio"))
        elif msg.type == "session.update":
            await self._session_update(d)
        elif msg.type == "input_audio_buffer.commit":
            if not s.commit_input() and s.policy.held is None:
                raise rt.RealtimeError("nothing to commit: no speech heard in the input audio buffer since the last "
                                       "commit", "input_audio_buffer_commit_empty")
        elif msg.type == "input_audio_buffer.clear":
            await s.clear_input()
            self._speech_item = None
            self.send_json(rt.event(self.ids, "input_audio_buffer.cleared"))
        elif msg.type == "conversation.item.create":
            self._create_user_item(d)
        elif msg.type == "conversation.item.truncate":
            await self._truncate(rt.parse_truncate(d))
        elif msg.type == "conversation.item.delete":
            self._delete(rt.parse_item_id(d))
        elif msg.type == "response.create":
            await self._response_create(rt.parse_response_create(d))
        elif msg.type == "response.cancel":
            if not s.replying:
                raise rt.RealtimeError("no response in progress to cancel", "response_cancel_not_active")
            await s.cancel_response()

    async def _append(self, audio: Any) -> None:
        await self._push(self.live.to_16k(rt.decode_append(audio, self.state.input_format)))

    async def _session_update(self, data: dict[str, Any]) -> None:
        change = rt.parse_session_update(data)
        update = proto.SessionUpdate()
        persona = None
        if change.voice is not None:
            provider, known = self.state.voice_choice(change.voice, self.voices)
            if provider is not None:
                update = replace(update, voice=provider)
            elif not known:  # a stored persona's id, or an error naming the choices
                try:
                    persona = await self._persona(change.voice)
                except ProtocolError:
                    raise rt.RealtimeError(
                        f"unknown voice {change.voice!r}: use a stored persona's id, one of the TTS voices "
                        f"({', '.join(self.voices) or 'none'}) or an OpenAI voice name (it keeps the configured "
                        "voice)", "invalid_value", "session.audio.output.voice") from None
                update = replace(update, persona_id=change.voice)
        if change.input_format is not None:
            update = replace(update, input_sample_rate=rt.FORMAT_RATES[change.input_format])
        if change.instructions is not None:
            update = replace(update, persona=change.instructions)
        self.live.apply(update, self.session, self.shared_tts, persona=persona)
        rs.apply(change, self.session, self.state)
        if change.voice is not None:
            self.state.voice = change.voice
        if change.refused:
            self.send_error("unsupported_field", f"Attune cannot honour {', '.join(change.refused)}: not applied "
                            "(the rest of the update was)", param=change.refused[0].split(" ")[0])
        self.send_json(rt.event(self.ids, "session.updated", session=self._describe()))

    def _new_item(self, role: str, item_id: str | None = None) -> tuple[str, str | None]:
        item_id = item_id or self.ids.new("item")
        previous, self._last_item = self._last_item, item_id
        self.items[item_id] = _Item(role)
        return item_id, previous

    def _create_user_item(self, data: dict[str, Any]) -> None:
        """A typed message (answered at the next response.create), or a recorded one: its audio is held as an
        ended turn, transcribed when the response to it starts."""
        text, audio = rt.parse_user_item(data, self.state.input_format)
        given = data["item"].get("id")
        item_id, previous = self._new_item("user", given if isinstance(given, str) and given[:64] == given
                                           and given not in self.items else None)
        if audio is not None:
            self.session.hold_turn(resample(audio, self.state.input_rate, SAMPLE_RATE).astype(np.float32))
            item = rt.user_item(item_id, transcript=None, status="in_progress")
            self.send_json(rt.event(self.ids, "conversation.item.added", previous_item_id=previous, item=item))
            self._awaiting_transcript.append(item_id)
            return
        self.items[item_id].text = text
        item = rt.user_item(item_id, transcript=text, text=True)
        self.send_json(rt.event(self.ids, "conversation.item.added", previous_item_id=previous, item=item))
        self.send_json(rt.event(self.ids, "conversation.item.done", previous_item_id=previous, item=item))
        self._typed.append((item_id, text))

    async def _response_create(self, req: rt.ResponseRequest) -> None:
        s = self.session
        if s.replying:
            raise rt.RealtimeError("a response is already in progress; cancel it first",
                                   "conversation_already_has_active_response")
        if req.refused:
            self.send_error("unsupported_field", f"Attune cannot honour {', '.join(req.refused)}: ignored",
                            param=req.refused[0])
        before = s.settings
        st = before
        if req.instructions is not None:  # the prompt's front for this reply only (see docs: the KV cache)
            st = replace(st, persona=replace(st.persona, description=req.instructions))
        if req.max_output_tokens is not None:
            st = replace(st, reply=replace(st.reply, max_tokens=req.max_output_tokens
                                           or self.state.base.reply.max_tokens))
        self._next_modality = req.output_modalities[0] if req.output_modalities else None
        if st != before:
            s.apply(SessionChange(st))
        try:
            if self._typed:
                text = " ".join(t for _, t in self._typed)
                self._typed.clear()
                self._typed_turns.append(text)
                await s.submit_text(text)
            elif await s.respond():
                self._requested = True
            else:
                self._next_modality = None
                raise rt.RealtimeError("nothing to respond to: commit speech (input_audio_buffer.commit) or create "
                                       "a user message first", "response_create_without_input")
        finally:
            if st != before:
                s.apply(SessionChange(replace(s.settings, persona=before.persona, reply=before.reply)))

    async def _truncate(self, t: rt.Truncate) -> None:
        item = self.items.get(t.item_id)
        if item is None or item.role != "assistant" or item.response is None:
            raise rt.RealtimeError(f"no assistant audio item with id {t.item_id!r}", "item_not_found", "item_id")
        resp = item.response
        if t.audio_end_ms > resp.audio_ms + 1:
            raise rt.RealtimeError(f"audio_end_ms {t.audio_end_ms} is past the item's {int(resp.audio_ms)} ms of "
                                   "audio", "invalid_value", "audio_end_ms")
        if not resp.done and self.session.replying:
            await self.session.cancel_response()
        heard = rs.heard_text(sorted(resp.spans.values(), key=lambda sp: sp.start_ms), t.audio_end_ms)
        self.session.revise_heard(heard)
        item.text = heard
        self.send_json(rt.event(self.ids, "conversation.item.truncated", item_id=t.item_id,
                                content_index=t.content_index, audio_end_ms=t.audio_end_ms))

    def _delete(self, item_id: str) -> None:
        item = self.items.pop(item_id, None)
        if item is None:
            raise rt.RealtimeError(f"no item with id {item_id!r}", "item_not_found", "item_id")
        if item.text:
            self.session.memory.remove(item.role, item.text)
        self._typed = [(i, t) for i, t in self._typed if i != item_id]
        self.send_json(rt.event(self.ids, "conversation.item.deleted", item_id=item_id))

    async def _watch(self) -> None:
        sweeper = asyncio.create_task(self._sweep(), name="rt-sweep")
        try:
            await super()._watch()
        finally:
            sweeper.cancel()

    async def _sweep(self) -> None:
        """A turn in which the ASR heard no words gets no reply (the session's empty transcript closes its user
        item): once the session is quiet, a user item still open is closed with an empty transcript, and a
        requested response ends with no output."""
        quiet = 0
        while True:
            await asyncio.sleep(SWEEP_S)
            s = self.session
            pending = self._awaiting_transcript or self._requested
            quiet = quiet + 1 if (pending and not s.replying and s.policy.held is None and s.events.empty()
                                  and not s.detector.in_speech) else 0
            if quiet < 2:
                continue
            quiet = 0
            stale, self._awaiting_transcript = self._awaiting_transcript, []
            for item_id in stale:
                self.send_json(rt.event(self.ids, "conversation.item.input_audio_transcription.completed",
                                        item_id=item_id, content_index=0, transcript="",
                                        usage={"type": "duration", "seconds": 0.0}))
                self._finish_user_item(item_id, "", None)
            if self._requested:
                self._requested = False
                resp = _Response(self.ids.new("resp"), 0, self._next_modality or self.state.modality, {})
                self._next_modality = None
                self.send_json(rt.event(self.ids, "response.created",
                                        response=self._response_object(resp, "in_progress"), attune={}))
                self.send_json(rt.event(self.ids, "response.done", attune={"empty": True},
                                        response=self._response_object(resp, "completed")))

    # ---- session -> client ----
    async def _pump(self) -> None:
        while True:
            event = await self.session.events.get()
            self._observe(event)
            self._translate(event)

    def _translate(self, event: SessionEvent) -> None:
        t, d = event.type, event.data
        if t == ev.AUDIO_DELTA:
            self._audio_delta(event)
        elif t == ev.TRANSCRIPT_DELTA:
            self._transcript_delta(d)
        elif t == ev.SPEECH_STARTED:
            self._speech_item = self.ids.new("item")
            if self.state.turn.kind != "none":
                self.send_json(rt.event(self.ids, "input_audio_buffer.speech_started",
                                        audio_start_ms=int(d.get("audio_start_ms", 0)), item_id=self._speech_item))
        elif t == ev.SPEECH_STOPPED:
            self._committed(int(d.get("audio_end_ms", 0)))
        elif t == ev.TRANSCRIPT_PARTIAL:
            if self._speech_item is not None:
                self.send_json(rt.event(self.ids, "conversation.item.input_audio_transcription.delta",
                                        item_id=self._speech_item, content_index=0, delta=str(d.get("delta", ""))))
        elif t == ev.TRANSCRIPT:
            self._transcript(str(d.get("transcript", "")), empty=bool(d.get("empty")))
        elif t == ev.EMOTION_TURN:
            self._emotion_turn(d)
        elif t == ev.EMOTION_MEASUREMENT:
            self.send_json(rt.event(self.ids, t, **d))
        elif t == ev.RESPONSE_CREATED:
            self._response(int(d.get("turn", 0)), d)
        elif t in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED):
            self._response_done(event)
        elif t == ev.ERROR:
            code = str(d.get("code", "internal_error"))
            self.send_error(code, str(d.get("message", "")), error_type="server_error")
        elif t == proto.RESPONSE_QUEUED:
            self.send_json(rt.event(self.ids, "attune.response.queued", **d))

    def _committed(self, audio_end_ms: int) -> None:
        item_id = self._speech_item or self.ids.new("item")
        self._speech_item = None
        if self.state.turn.kind != "none":
            self.send_json(rt.event(self.ids, "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms,
                                    item_id=item_id))
        item_id, previous = self._new_item("user", item_id)
        self.send_json(rt.event(self.ids, "input_audio_buffer.committed", previous_item_id=previous,
                                item_id=item_id))
        self.send_json(rt.event(self.ids, "conversation.item.added", previous_item_id=previous,
                                item=rt.user_item(item_id, transcript=None, status="in_progress")))
        self._awaiting_transcript.append(item_id)
        self._spoken_item = item_id

    def _transcript(self, transcript: str, *, empty: bool = False) -> None:
        """The turn's words; ``empty``: it was heard as noise (no words), so its user item is done now with an
        empty transcript (no emotion follows)."""
        if self._typed_turns and transcript == self._typed_turns[0].strip():
            self._typed_turns.pop(0)
            self._last_transcript_item = None
            return
        if not self._awaiting_transcript:
            self._last_transcript_item = None
            return
        transcript = "" if empty else transcript
        *joined, item_id = self._awaiting_transcript  # turns answered together: the words are the last item's
        self._awaiting_transcript = []
        for other in joined:
            self._finish_user_item(other, "", None)
        self.items[item_id].text = transcript
        self._last_transcript_item = item_id
        self.send_json(rt.event(self.ids, "conversation.item.input_audio_transcription.completed",
                                item_id=item_id, content_index=0, transcript=transcript,
                                usage={"type": "duration", "seconds": 0.0}))
        if empty:
            self._last_transcript_item = None
            self._finish_user_item(item_id, "", None)

    def _emotion_turn(self, d: dict[str, Any]) -> None:
        item_id, self._last_transcript_item = self._last_transcript_item, None
        self.send_json(rt.event(self.ids, ev.EMOTION_TURN, item_id=item_id, **d))
        if item_id is not None:
            self._finish_user_item(item_id, self.items[item_id].text, d.get("emotion"))

    def _finish_user_item(self, item_id: str, transcript: str, emotion: Any) -> None:
        self.send_json(rt.event(self.ids, "conversation.item.done", item=rt.user_item(item_id, transcript=transcript),
                                attune={"emotion": emotion}))

    def _response(self, turn: int, plan: dict[str, Any]) -> _Response:
        resp = self._responses.get(turn)
        if resp is None:
            self._requested = False
            modality, self._next_modality = self._next_modality or self.state.modality, None
            resp = self._responses[turn] = _Response(self.ids.new("resp"), turn, modality,
                                                     {k: v for k, v in plan.items() if k != "turn"})
            self.send_json(rt.event(self.ids, "response.created", response=self._response_object(resp, "in_progress"),
                                    attune=resp.plan))
        return resp

    def _response_object(self, resp: _Response, status: str, **extra: Any) -> dict[str, Any]:
        return rt.response(resp.resp_id, status=status, modality=resp.modality, voice=self.state.voice,
                           fmt=self.state.output_format, max_tokens=self.session.settings.reply.max_tokens, **extra)

    def _output_item(self, turn: int) -> _Response:
        resp = self._response(turn, {})
        if resp.item_id is None:
            item_id, previous = self._new_item("assistant")
            resp.item_id = item_id
            self.items[item_id].response = resp
            item = rt.assistant_item(item_id, transcript=None, status="in_progress", modality=resp.modality)
            base = {"response_id": resp.resp_id, "output_index": 0}
            self.send_json(rt.event(self.ids, "response.output_item.added", item=item, **base))
            self.send_json(rt.event(self.ids, "conversation.item.added", previous_item_id=previous, item=item))
            self.send_json(rt.event(self.ids, "response.content_part.added", item_id=item_id, content_index=0,
                                    part=rt.content_part(resp.modality, ""), **base))
        return resp

    def _transcript_delta(self, d: dict[str, Any]) -> None:
        resp = self._output_item(int(d.get("turn", 0)))
        text = str(d.get("delta", ""))
        delta = (" " if resp.transcript else "") + text
        resp.transcript.append(text)
        kind = "response.output_text.delta" if resp.modality == "text" else "response.output_audio_transcript.delta"
        self.send_json(rt.event(self.ids, kind, response_id=resp.resp_id, item_id=resp.item_id, output_index=0,
                                content_index=0, delta=delta))

    def _audio_delta(self, event: SessionEvent) -> None:
        if event.audio is None:
            return
        turn = int(event.data.get("turn", 0))
        resp = self._output_item(turn)
        chunk = event.audio
        ms = 1000.0 * chunk.duration_s
        sentence = int(event.data.get("sentence", 0))
        span = resp.spans.get(sentence)
        text = resp.transcript[-1] if resp.transcript else ""
        if span is None:
            resp.spans[sentence] = rs.Span(text, resp.audio_ms, resp.audio_ms + ms)
        else:
            span.end_ms = resp.audio_ms + ms
        resp.audio_ms += ms
        if resp.modality == "text":
            return
        obj = rt.event(self.ids, "response.output_audio.delta", response_id=resp.resp_id, item_id=resp.item_id,
                       output_index=0, content_index=0, delta=rt.encode_output(chunk.samples, self.state.output_format))
        self._enqueue(_Out(proto.dumps(obj), chunk.duration_s, turn))

    def _response_done(self, event: SessionEvent) -> None:
        d = event.data
        turn = int(d.get("turn", 0))
        resp = self._response(turn, {})
        self._responses.pop(turn, None)
        resp.done = True
        status = str(d.get("status", "completed"))
        status = status if status in ("completed", "cancelled", "failed") else "failed"
        if event.type == ev.RESPONSE_CANCELLED:
            self._drop_turn_audio(turn)
            status = "cancelled"
        transcript = " ".join(resp.transcript)
        output = []
        if resp.item_id is not None:
            output.append(self._close_item(resp, transcript, status))
        trace = d.get("trace") or {}
        failure = {"type": "server_error", "code": "reply_failed", "message": "the reply failed (see the error "
                   "event before)"} if status == "failed" else None
        reason = CANCEL_REASON.get(str(d.get("reason", "")), "client_cancelled") if status == "cancelled" else None
        response = self._response_object(resp, status, output=output, usage=rt.usage(trace, transcript),
                                         reason=reason, failure=failure)
        self.send_json(rt.event(self.ids, "response.done", response=response, attune=_extension(resp, trace)))
        if d.get("reason") == "premature_commit":
            self._withdraw_premature(resp)

    def _withdraw_premature(self, resp: _Response) -> None:
        """A turn committed too early goes on as one (``turn_policy.ResumeTurn``): the session keeps neither its
        first part nor the cut reply, and answers the whole turn under the item the speech that goes on commits.
        The client's conversation is made to match with ``conversation.item.deleted`` for the first part's user
        item and the cut response's item, so it never shows the first words twice."""
        withdrawn = [i for i in (self._spoken_item, resp.item_id) if i is not None and i in self.items]
        self._spoken_item = None
        for item_id in withdrawn:
            self.items.pop(item_id)
            self._awaiting_transcript = [i for i in self._awaiting_transcript if i != item_id]
            if self._last_transcript_item == item_id:
                self._last_transcript_item = None
            self.send_json(rt.event(self.ids, "conversation.item.deleted", item_id=item_id))
        self._last_item = next(reversed(self.items), None)

    def _close_item(self, resp: _Response, transcript: str, status: str) -> dict[str, Any]:
        base = {"response_id": resp.resp_id, "item_id": resp.item_id, "output_index": 0, "content_index": 0}
        if resp.modality == "text":
            self.send_json(rt.event(self.ids, "response.output_text.done", text=transcript, **base))
        else:
            self.send_json(rt.event(self.ids, "response.output_audio.done", **base))
            self.send_json(rt.event(self.ids, "response.output_audio_transcript.done", transcript=transcript, **base))
        self.send_json(rt.event(self.ids, "response.content_part.done", part=rt.content_part(resp.modality, transcript),
                                **base))
        assert resp.item_id is not None
        item = rt.assistant_item(resp.item_id, transcript=transcript, status=ITEM_DONE_STATUS[status],
                                 modality=resp.modality)
        self.items[resp.item_id].text = transcript
        self.send_json(rt.event(self.ids, "response.output_item.done", response_id=resp.resp_id, output_index=0,
                                item=item))
        self.send_json(rt.event(self.ids, "conversation.item.done", item=item))
        return item


def _extension(resp: _Response, trace: dict[str, Any]) -> dict[str, Any]:
    """``response.done``'s ``attune`` object: the plan (strategy, expressed emotion, prosody), the user's emotion,
    what was heard (``acknowledgement``: the first sound played before the reply's words, audio only), and the
    latency breakdown."""
    keys = ("user_emotion", "user_confidence", "strategy", "expressed_emotion", "heard_text", "reply_text",
            "acknowledgement")
    return {**resp.plan, **{k: trace[k] for k in keys if k in trace},
            "latency_ms": trace.get("latency_ms", {}), "voice_to_voice_ms": trace.get("voice_to_voice_ms")}
