// The Attune web client: microphone -> AudioWorklet (PCM16, 16 kHz, 20 ms) -> WebSocket /ws; reply audio played
// as it arrives and flushed at once on barge-in; live transcript, emotion chart, strategy and latency per reply.
// window.attune.stats exposes what the page measured (the browser test reads it).
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const stats = { capturedFrames: 0, capturedRms: 0, sentBytes: 0, audioFrames: 0, audioSeconds: 0,
                  playedPeak: 0, flushes: 0, cutSources: 0, emotionPoints: 0, emotionDrawn: 0,
                  transcripts: 0, partials: 0, partialShown: "", replies: 0, events: {} };
  const state = { ws: null, capture: null, play: null, outRate: 24000, nextTime: 0, sources: new Set(),
                  points: [], agentMsg: {}, userMsg: {}, analyser: null };
  window.attune = { stats, state, send, sessionExtras: {} };  // persona-picker.js adds persona_id

  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "pill " + cls; }

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const token = params.get("token");
    return `${proto}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
  }

  function send(obj) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(obj)); }

  // ---- playback ----
  function playPcm(buf) {
    const ctx = state.play;
    const pcm = new Int16Array(buf);
    const audio = ctx.createBuffer(1, pcm.length, state.outRate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(state.analyser);
    const at = Math.max(ctx.currentTime + 0.03, state.nextTime);
    src.start(at);
    state.nextTime = at + audio.duration;
    state.sources.add(src);
    src.onended = () => state.sources.delete(src);
    stats.audioFrames += 1;
    stats.audioSeconds += audio.duration;
  }

  function flushPlayback() {
    stats.flushes += 1;
    for (const src of state.sources) { try { src.stop(); } catch (e) { /* already stopped */ } stats.cutSources += 1; }
    state.sources.clear();
    state.nextTime = 0;
  }

  function watchPlayback() {
    const data = new Float32Array(state.analyser.fftSize);
    const tick = () => {
      state.analyser.getFloatTimeDomainData(data);
      let peak = 0;
      for (const x of data) peak = Math.max(peak, Math.abs(x));
      stats.playedPeak = Math.max(stats.playedPeak, peak);
      stats.playingNow = peak > 0.01;
      setStatus(stats.playingNow ? "speaking" : "listening", stats.playingNow ? "speaking" : "on");
      requestAnimationFrame(tick);
    };
    tick();
  }

  // ---- transcript ----
  function bubble(cls, text) {
    const div = document.createElement("div");
    div.className = "msg " + cls;
    div.innerHTML = '<div class="text"></div><div class="meta"></div>';
    div.querySelector(".text").textContent = text;
    $("chat").appendChild(div);
    $("chat").scrollTop = $("chat").scrollHeight;
    return div;
  }

  function agentBubble(turn) {
    if (!state.agentMsg[turn]) state.agentMsg[turn] = bubble("agent", "");
    return state.agentMsg[turn];
  }

  // ---- emotion ----
  function drawChart() {
    const c = $("chart"), g = c.getContext("2d");
    const w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#e3e5ea"; g.lineWidth = 1;
    g.beginPath(); g.moveTo(0, h / 2); g.lineTo(w, h / 2); g.stroke();
    const pts = state.points.slice(-120);
    if (!pts.length) return;
    const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 10);
    const x = (t) => 8 + (w - 16) * (t - t0) / (t1 - t0);
    const y = (v) => h / 2 - v * (h / 2 - 10);
    for (const [key, color] of [["valence", "#e0822f"], ["arousal", "#2f9e8f"]]) {
      g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 2.5;
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[key])) : g.moveTo(x(p.t), y(p[key]))));
      g.stroke();
      const last = pts[pts.length - 1];
      g.beginPath(); g.arc(x(last.t), y(last[key]), 4, 0, 6.3); g.fill();
    }
    stats.emotionDrawn = pts.length;
  }

  function onEmotion(e) {
    const d = e.dimensions || {};
    state.points.push({ t: (e.audio_end_ms || 0) / 1000, valence: d.valence || 0, arousal: d.arousal || 0 });
    stats.emotionPoints += 1;
    const top = (e.predictions || [])[0];
    if (top) $("category").textContent = `${top.emotion} · ${Math.round(100 * (e.confidence || 0))}%`;
    $("confidence").style.width = `${Math.round(100 * (e.confidence || 0))}%`;
    drawChart();
  }

  // ---- events ----
  function onEvent(e) {
    stats.events[e.type] = (stats.events[e.type] || 0) + 1;
    window.dispatchEvent(new CustomEvent("attune:event", { detail: e }));
    switch (e.type) {
      case "session.created": state.outRate = e.session.output_sample_rate; break;
      case "input_audio_buffer.speech_started": if (e.barge_in) flushPlayback(); break;
      case "response.cancelled": {
        flushPlayback();
        const m = state.agentMsg[e.turn];
        if (m) { m.classList.add("cut"); m.querySelector(".meta").textContent += " · interrupted"; }
        break;
      }
      case "conversation.item.input_audio_transcription.delta": {
        // Settled words while the user speaks, shown greyed until the turn's transcript replaces them.
        stats.partials += 1;
        if (!state.userMsg[e.turn]) {
          state.userMsg[e.turn] = bubble("user partial", "");
          state.userMsg[e.turn].style.opacity = "0.6";
        }
        const t = state.userMsg[e.turn].querySelector(".text");
        t.textContent = (t.textContent + " " + e.delta).trim();
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        stats.transcripts += 1;
        const m = state.userMsg[e.turn];
        if (m) {
          stats.partialShown = m.querySelector(".text").textContent;
          m.classList.remove("partial"); m.style.opacity = "";
          m.querySelector(".text").textContent = e.transcript;
        }
        else state.userMsg[e.turn] = bubble("user", e.transcript);
        break;
      }
      case "emotion.measurement": onEmotion(e); break;
      case "response.created":
        agentBubble(e.turn).querySelector(".meta").textContent = `${e.strategy} → ${e.expressed_emotion}`; break;
      case "response.output_audio_transcript.delta": {
        const t = agentBubble(e.turn).querySelector(".text");
        t.textContent = (t.textContent + " " + e.delta).trim();
        break;
      }
      case "response.done": {
        if (e.status === "cancelled") break;  // response.cancelled said it already
        stats.replies += 1;
        const v2v = e.trace && e.trace.voice_to_voice_ms;
        if (v2v != null) agentBubble(e.turn).querySelector(".meta").textContent += ` · ${Math.round(v2v)} ms`;
        break;
      }
      case "error": bubble("error", `${e.error.code}: ${e.error.message}`); break;
    }
  }

  // ---- start / stop ----
  async function start() {
    const processing = params.get("ec") !== "0";
    state.capture = new AudioContext({ sampleRate: 16000 });
    state.play = new AudioContext();
    state.analyser = state.play.createAnalyser();
    state.analyser.fftSize = 512;
    state.analyser.connect(state.play.destination);
    await state.capture.audioWorklet.addModule("/static/capture-worklet.js");
    const ws = new WebSocket(wsUrl());
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("cannot connect")); });
    ws.onmessage = (m) => (typeof m.data === "string" ? onEvent(JSON.parse(m.data)) : playPcm(m.data));
    ws.onclose = (c) => { setStatus(`closed (${c.code})`, "off"); stop(false); };
    send({ type: "session.update", session: { input_sample_rate: state.capture.sampleRate,
                                                strategy: $("strategy").value,
                                                ...window.attune.sessionExtras } });
    // The worklet and the socket are ready before the microphone opens: its first words are not lost.
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1,
      echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing } });
    const node = new AudioWorkletNode(state.capture, "capture-processor");
    node.port.onmessage = ({ data }) => {
      stats.capturedFrames += 1;
      stats.capturedRms = Math.max(stats.capturedRms, data.rms);
      $("level").style.width = `${Math.min(100, data.rms * 400)}%`;
      if (ws.readyState === 1) { ws.send(data.pcm); stats.sentBytes += data.pcm.byteLength; }
    };
    state.capture.createMediaStreamSource(stream).connect(node);
    state.stream = stream;
    watchPlayback();
    $("start").textContent = "Stop"; $("start").classList.add("live");
    setStatus("listening", "on");
  }

  function stop(closeSocket = true) {
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    if (closeSocket && state.ws) state.ws.close();
    if (state.capture) state.capture.close();
    flushPlayback();
    state.stream = state.capture = null;
    $("start").textContent = "Start talking"; $("start").classList.remove("live");
  }

  $("start").onclick = () => (state.stream ? stop() : start().catch((e) => {
    bubble("error", String(e.message || e)); setStatus("offline", "off");
  }));
  $("strategy").onchange = () => send({ type: "session.update", session: { strategy: $("strategy").value } });
  $("typed").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;  // the server echoes it as the turn's transcript
    send({ type: "conversation.item.create", item: { type: "message", role: "user",
                                                      content: [{ type: "input_text", text }] } });
    $("text").value = "";
  };
  drawChart();
})();
