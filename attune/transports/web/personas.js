// The persona page: list, create, edit and delete personas through /v1/personas, upload a voice sample, and
// "try this voice" (the preview endpoint speaks a line in one emotion; the WAV plays in an <audio> element).
// Server errors ({"error": {code, field, message}}) are shown next to the field they name. The token comes from
// ?token= and is sent as a bearer header. window.personaPage.stats exposes what the page saw (the browser test).
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const stats = { listed: 0, saved: 0, deleted: 0, uploads: 0, rejections: [], previews: [], played: 0,
                  errors: [] };
  const state = { personas: [], current: null, dirty: false, ctx: null, url: null, lastWav: null };
  window.personaPage = { stats, state };
  const SAMPLE_TYPES = ["audio/wav", "audio/x-wav", "audio/flac"];

  class ApiError extends Error {
    constructor(status, error) { super(error.message); this.status = status; this.error = error; }
  }

  async function api(method, path, body, contentType) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload = body;
    if (body !== undefined && !(body instanceof Blob)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    } else if (contentType) headers["Content-Type"] = contentType;
    let res;
    try { res = await fetch(path, { method, headers, body: payload }); } catch (e) {
      throw new ApiError(0, { code: "network", field: null, message: "cannot reach the server" });
    }
    if (res.ok) return res;
    let error = { code: String(res.status), field: null, message: `${res.status} ${res.statusText}`.trim() };
    try { const j = await res.json(); if (j && j.error) error = { ...error, ...j.error }; } catch (e) { /* not JSON */ }
    if (res.status === 401) error.message = "not authorized: open this page with ?token=<the server's token>";
    if (res.status === 413 && error.code === "413") error.message = "too large for the server";
    throw new ApiError(res.status, error);
  }

  const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
  const personaPath = (id, rest = "") => `/v1/personas/${encodeURIComponent(id)}${rest}`;

  // ---- errors next to their fields ----
  function errorSlot(field) {
    // "voice.advanced.alpha" -> the voice.advanced slot; "voice.fallback.1" -> voice.fallback
    for (let f = field || ""; f; f = f.includes(".") ? f.slice(0, f.lastIndexOf(".")) : "") {
      const el = document.querySelector(`[data-field="${CSS.escape(f)}"]`);
      if (!el) continue;
      if (el.classList.contains("field-error")) return { slot: el, input: null };
      const id = (el.getAttribute("aria-describedby") || "").split(" ").find((x) => x.startsWith("e-"));
      if (id) return { slot: $(id), input: el };
    }
    return null;
  }

  function showError(slot, text, input) {
    slot.textContent = text;
    slot.hidden = false;
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  function clearErrors() {
    for (const el of document.querySelectorAll(".editor .field-error")) { el.hidden = true; el.textContent = ""; }
    for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function report(err, fallbackSlot = $("form-error")) {
    const e = err instanceof ApiError ? err.error : { code: "error", field: null, message: String(err.message || err) };
    const where = errorSlot(e.field);
    if (where) showError(where.slot, e.message, where.input);
    else showError(fallbackSlot, e.field ? `${e.field}: ${e.message}` : e.message);
    stats.errors.push(e);
  }

  // ---- the list ----
  async function load() {
    try {
      const j = await (await api("GET", "/v1/personas")).json();
      state.personas = j.personas || [];
      $("page-error").hidden = true;
    } catch (err) {
      showError($("page-error"), err.error ? err.error.message : String(err));
      return;
    }
    const list = $("list");
    list.replaceChildren();
    for (const p of state.personas) {
      const li = document.createElement("li");
      li.dataset.id = p.id;
      li.classList.toggle("current", state.current !== null && state.current.id === p.id);
      li.innerHTML = '<div class="who"><strong></strong><code></code><div></div></div>' +
        '<button type="button" class="edit">Edit</button>';
      li.querySelector("strong").textContent = p.name || p.id;
      li.querySelector("code").textContent = p.id;
      li.querySelector(".who div").textContent = p.description || "";
      const edit = li.querySelector("button");
      edit.setAttribute("aria-label", `Edit ${p.name || p.id}`);
      edit.onclick = () => open(p);
      list.appendChild(li);
    }
    if (!state.personas.length) list.innerHTML = '<li class="note">No personas yet.</li>';
    stats.listed += 1;
  }

  // ---- the form ----
  const FIELDS = { "f-name": "name", "f-description": "description", "f-traits": "traits", "f-strategy": "strategy",
                   "f-greeting": "greeting" };
  const VOICE = { "f-provider": "provider", "f-model": "model", "f-language": "language", "f-quality": "quality" };

  function open(p) {
    clearErrors();
    state.current = p;
    const v = (p && p.voice) || {};
    $("editor").hidden = false;
    $("editor-title").textContent = p ? `Edit ${p.name || p.id}` : "New persona";
    $("f-id").value = p ? p.id : "";
    $("f-id").readOnly = Boolean(p);
    for (const [id, key] of Object.entries(FIELDS)) $(id).value = p ? (p[key] ?? "") : "";
    if (!p) $("f-strategy").value = "complement";
    for (const [id, key] of Object.entries(VOICE)) $(id).value = v[key] ?? "";
    if (!p) { $("f-provider").value = "piper"; $("f-language").value = "en-us"; $("f-quality").value = "high"; }
    $("f-fallback").value = (v.fallback || (p ? [] : ["espeak"])).join(", ");
    $("f-speed").value = v.speed ?? 1.0;
    $("f-pitch").value = v.pitch ?? 0.0;
    $("advanced").replaceChildren();
    for (const [k, val] of Object.entries(v.advanced || {})) addSetting(k, String(val));
    $("delete").hidden = $("sample-box").hidden = $("try-box").hidden = !p;
    $("saved").textContent = "";
    $("notes").replaceChildren();
    showSample(v.sample);
    state.dirty = false;
    for (const li of $("list").children) li.classList.toggle("current", Boolean(p) && li.dataset.id === p.id);
    (p ? $("f-name") : $("f-id")).focus();
  }

  function addSetting(key = "", value = "") {
    const row = document.createElement("div");
    row.className = "kv";
    const n = $("advanced").children.length + 1;
    row.innerHTML = '<input class="k" autocomplete="off"><input class="v" autocomplete="off">' +
      '<button type="button" class="remove" title="remove">✕</button>';
    const [k, v, rm] = row.children;
    k.value = key; v.value = value;
    k.setAttribute("aria-label", `setting ${n} name`); v.setAttribute("aria-label", `setting ${n} value`);
    rm.setAttribute("aria-label", `remove setting ${n}`);
    rm.onclick = () => { row.remove(); state.dirty = true; };
    $("advanced").appendChild(row);
    return k;
  }

  function advancedValue(text) {
    const t = text.trim();
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
    return text;
  }

  function number(id) {
    const t = $(id).value.trim();
    return t === "" ? null : Number(t);
  }

  function readForm() {
    const advanced = {};
    for (const row of $("advanced").children) {
      const key = row.querySelector(".k").value.trim(), value = row.querySelector(".v").value;
      if (!key && !value.trim()) continue;
      if (!key) throw new ApiError(0, { code: "invalid", field: "voice.advanced", message: "a setting needs a name" });
      advanced[key] = advancedValue(value);
    }
    const p = { id: $("f-id").value.trim() };
    for (const [id, key] of Object.entries(FIELDS)) p[key] = $(id).value;
    const voice = {};
    for (const [id, key] of Object.entries(VOICE)) voice[key] = $(id).value.trim();
    voice.fallback = $("f-fallback").value.split(",").map((s) => s.trim()).filter(Boolean);
    voice.speed = number("f-speed");
    voice.pitch = number("f-pitch");
    voice.advanced = advanced;
    p.voice = voice;
    return p;
  }

  async function save(ev) {
    ev.preventDefault();
    clearErrors();
    $("saved").textContent = "";
    try {
      const body = readForm();
      const res = state.current ? await api("PUT", personaPath(state.current.id), body)
        : await api("POST", "/v1/personas", body);
      const saved = await res.json();
      await load();
      open(saved);
      $("saved").textContent = `Saved ${saved.name || saved.id}.`;
      stats.saved += 1;  // counted once the page shows it (the test waits on these figures)
    } catch (err) { report(err); }
  }

  async function remove() {
    const p = state.current;
    if (!p || !confirm(`Delete the persona ${p.name || p.id}?`)) return;
    clearErrors();
    try {
      await api("DELETE", personaPath(p.id));
      state.current = null;
      $("editor").hidden = true;
      await load();
      $("new").focus();
      stats.deleted += 1;
    } catch (err) { report(err); }
  }

  // ---- the voice sample ----
  function showSample(s) {
    $("detach").hidden = !s;
    $("sample").textContent = s
      ? `Sample: ${s.duration_s.toFixed(1)} s · ${s.sample_rate} Hz · ${s.channels} ch · ${s.bits}-bit · ` +
        `SNR ${Number(s.snr_db).toFixed(1)} dB · ${String(s.sha256).slice(0, 12)}`
      : "No sample.";
  }

  async function upload() {
    const slot = $("e-sample");
    slot.hidden = true;
    $("f-sample").removeAttribute("aria-invalid");
    $("notes").replaceChildren();
    const file = $("f-sample").files[0];
    if (!file) { showError(slot, "Choose a WAV or FLAC file first.", $("f-sample")); return; }
    const type = SAMPLE_TYPES.includes(file.type) ? file.type
      : (file.name.toLowerCase().endsWith(".flac") ? "audio/flac" : "audio/wav");  // the server reads the content
    $("upload").disabled = true;
    try {
      const j = await (await api("POST", personaPath(state.current.id, "/voice"), file, type)).json();
      state.current = j.persona;
      showSample(j.sample);
      for (const note of j.notes || []) {
        const li = document.createElement("li"); li.textContent = note; $("notes").appendChild(li);
      }
      if (!(j.notes || []).length) $("notes").innerHTML = "<li>accepted as it is</li>";
      stats.uploads += 1;
    } catch (err) {
      const e = err.error || { code: "error", field: null, message: String(err) };
      const rule = e.code === "rejected" && e.field ? `rule "${e.field}"` : e.code;
      const message = e.field && e.message.startsWith(`${e.field}: `) ? e.message.slice(e.field.length + 2) : e.message;
      showError(slot, `Rejected (${rule}): ${message}`, $("f-sample"));
      stats.rejections.push(e);
    } finally { $("upload").disabled = false; }
  }

  async function detach() {
    try {
      state.current = await (await api("DELETE", personaPath(state.current.id, "/voice"))).json();
      showSample(null);
      $("notes").replaceChildren();
    } catch (err) { report(err, $("e-sample")); }
  }

  // ---- try this voice ----
  function wavInfo(buf) {
    const v = new DataView(buf);
    if (buf.byteLength < 44 || v.getUint32(0, false) !== 0x52494646) return null;  // "RIFF"
    let rate = 0, channels = 0, bits = 0;
    for (let at = 12; at + 8 <= buf.byteLength;) {
      const id = v.getUint32(at, false), size = v.getUint32(at + 4, true);
      if (id === 0x666d7420) { channels = v.getUint16(at + 10, true); rate = v.getUint32(at + 12, true);
                               bits = v.getUint16(at + 22, true); }  // "fmt "
      if (id === 0x64617461 && rate) {  // "data"
        const bytes = Math.min(size, buf.byteLength - at - 8);
        return { rate, channels, bits, duration: bytes / (rate * channels * (bits / 8)) };
      }
      at += 8 + size + (size & 1);
    }
    return null;
  }

  async function preview(emotion, button) {
    const slot = $("e-preview");
    slot.hidden = true;
    const text = $("f-line").value.trim();
    for (const b of $("try-buttons").children) b.disabled = true;
    $("played").textContent = `Speaking ${emotion}…`;
    try {
      const res = await api("POST", personaPath(state.current.id, "/preview"), text ? { text, emotion } : { emotion });
      const buf = await res.arrayBuffer();
      const info = wavInfo(buf) || { rate: 0, duration: 0 };
      state.ctx = state.ctx || new AudioContext();
      const decoded = await state.ctx.decodeAudioData(buf.slice(0));
      let peak = 0;
      for (const x of decoded.getChannelData(0)) peak = Math.max(peak, Math.abs(x));
      const entry = { emotion, bytes: buf.byteLength, rate: info.rate, duration: info.duration,
                      decodedDuration: decoded.duration, peak, played: false };
      state.lastWav = buf;  // the real-voice test reads the WAV the page received
      stats.previews.push(entry);
      if (state.url) URL.revokeObjectURL(state.url);
      state.url = URL.createObjectURL(new Blob([buf], { type: "audio/wav" }));
      const player = $("player");
      player.onended = () => { entry.played = true; stats.played += 1; };
      player.src = state.url;
      await player.play();
      $("played").textContent = `${emotion}: ${decoded.duration.toFixed(2)} s at ${info.rate} Hz` +
        (state.dirty ? " (the saved persona: save to hear your changes)" : "");
    } catch (err) {
      $("played").textContent = "";
      report(err, slot);
    } finally {
      for (const b of $("try-buttons").children) b.disabled = false;
      button.focus();
    }
  }

  // ---- wiring ----
  $("back").href = withToken("/");
  $("new").onclick = () => open(null);
  $("cancel").onclick = () => { $("editor").hidden = true; state.current = null; $("new").focus(); };
  $("editor").onsubmit = save;
  $("editor").oninput = (ev) => { if (ev.target.id !== "f-line" && ev.target.id !== "f-sample") state.dirty = true; };
  $("delete").onclick = remove;
  $("add-setting").onclick = () => { addSetting().focus(); state.dirty = true; };
  $("upload").onclick = upload;
  $("detach").onclick = detach;
  for (const b of $("try-buttons").children) b.onclick = () => preview(b.dataset.emotion, b);
  fetch("/health").then((r) => r.json()).then((h) => {
    const providers = Object.keys(((h.engines || {}).tts || {}).providers || {});
    for (const name of providers) { const o = document.createElement("option"); o.value = name; $("providers").appendChild(o); }
  }).catch(() => { /* suggestions only */ });
  load();
})();
