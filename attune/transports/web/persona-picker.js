// The conversation page's persona picker: fills #persona from GET /v1/personas and sends session.update with
// persona_id when it changes ("(configured)" sends null: back to the configured agent) (app.js sends the chosen one with its first session.update, through
// window.attune.sessionExtras). Hidden where the server has no persona API or refuses the token.
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const select = document.getElementById("persona");
  const label = document.getElementById("persona-label");
  const link = document.getElementById("personas-link");
  const attune = window.attune;
  if (token) link.href = `/personas?token=${encodeURIComponent(token)}`;

  function fill(personas) {
    select.replaceChildren();
    const none = document.createElement("option");
    none.value = ""; none.textContent = "(configured)";
    select.appendChild(none);
    for (const p of personas) {
      const o = document.createElement("option");
      o.value = p.id; o.textContent = p.name ? `${p.name} (${p.id})` : p.id;
      select.appendChild(o);
    }
    label.hidden = false;
  }

  select.onchange = () => {
    const id = select.value;
    if (id) attune.sessionExtras.persona_id = id; else delete attune.sessionExtras.persona_id;
    attune.send({ type: "session.update", session: { persona_id: id || null } });  // null: the configured agent
  };
  window.addEventListener("attune:event", ({ detail: e }) => {
    const s = e.session;
    if ((e.type === "session.created" || e.type === "session.updated") && s && "persona_id" in s) {
      attune.stats.personaId = s.persona_id;  // the server's personas.default_id shows here on session.created
      const id = s.persona_id || "";
      if ([...select.options].some((o) => o.value === id)) select.value = id;
    }
  });
  fetch("/v1/personas", { headers: token ? { Authorization: `Bearer ${token}` } : {} })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
    .then((j) => fill(j.personas || []))
    .catch(() => { label.hidden = true; });
})();
