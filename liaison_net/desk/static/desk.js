// liaison desk: one small script, no framework. Everything from the network is shown with
// textContent (never as HTML); every change carries the CSRF token (security.py).
"use strict";
(function () {
  let csrf = "";
  let session = null;
  let reading = null;        // the envelope open in the reader
  let timelineId = null;     // the timeline on screen
  let requests = [];         // for the countdown
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function when(ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function say(text, good) {
    const box = $("notice");
    box.textContent = text || "";
    box.className = text ? (good ? "ok" : "error") : "";
  }

  async function api(method, path, body) {
    const init = { method: method, headers: { "Accept": "application/json" },
                   credentials: "same-origin" };
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf;
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = new Error((data && data.detail) || ("HTTP " + resp.status));
      err.code = (data && data.error) || "http_" + resp.status;
      throw err;
    }
    return data;
  }

  function failed(err) { say(err.code + ": " + err.message, false); }

  // --- screens -------------------------------------------------------------------------

  // A screen is loaded before it is shown: shown first, its rows from the last visit would
  // move under the officer's pointer as the fresh ones came in (a click on "Read" landing
  // on empty space or on another row).
  let showing = 0;
  async function show(name) {
    const turn = ++showing;
    say("");
    const loaders = { inbox: loadInbox, sent: loadSent, requests: loadRequests,
                      signals: loadSignals, directory: () => search("") };
    if (loaders[name]) {
      try { await loaders[name](); } catch (e) { failed(e); }
    }
    if (turn !== showing) return;  // another screen was asked for meanwhile
    document.querySelectorAll("main > section").forEach((s) => {
      s.hidden = s.id !== "screen-" + name;
    });
    document.querySelectorAll("nav button").forEach((b) => {
      if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    const heading = document.querySelector("#screen-" + name + " h2");
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }

  function badges(tag) {
    const box = el("span", null, "badges");
    if (!tag) { box.appendChild(el("span", "tag unknown", "badge")); return box; }
    const h = el("span", tag.handling, "badge handling");
    h.title = tag.handling_meaning || "";
    const t = el("span", "TLP:" + tag.tlp, "badge tlp tlp-" + tag.tlp.replace("+", "-").toLowerCase());
    t.title = tag.tlp_meaning || "";
    const e = el("span", tag.evaluation, "badge evaluation");
    e.title = tag.evaluation_meaning || "";
    box.append(h, t, e);
    return box;
  }

  // --- inbox and reader ------------------------------------------------------------------

  // The table is refreshed whenever anything arrives: a row that is still listed keeps its
  // element (and its Read button), so a click that lands during a refresh is never lost.
  let inboxLoads = 0;
  async function loadInbox() {
    const table = $("inbox-table");
    inboxLoads += 1;
    table.setAttribute("aria-busy", "true");
    try {
      renderInbox(await api("GET", "/api/inbox" + ($("inbox-all").checked ? "?all=1" : "")));
    } finally {
      inboxLoads -= 1;
      if (!inboxLoads) table.setAttribute("aria-busy", "false");
    }
  }

  function renderInbox(data) {
    const body = document.querySelector("#inbox-table tbody");
    const kept = new Map();
    body.querySelectorAll("tr[data-id]").forEach((row) => kept.set(row.dataset.id, row));
    const rows = data.items.map((item) => inboxRow(item, kept.get(item.id)));
    if (!rows.length) {
      const row = el("tr"); const cell = el("td", "Nothing waiting."); cell.colSpan = 6;
      row.appendChild(cell); rows.push(row);
    }
    const current = Array.from(body.children);
    if (current.length !== rows.length || rows.some((row, i) => current[i] !== row)) {
      body.replaceChildren(...rows);
    }
  }

  function inboxRow(item, row) {
    const signature = JSON.stringify(item);
    if (row && row.dataset.signature === signature) return row;
    const cells = [
      el("td", item.precedence + (item.kind !== "message" ? " · " + item.kind : "")),
      el("td", item.sender),
      el("td", item.subject || item.problem || "(not readable)"),
      el("td"),
      el("td", when(item.received)),
    ];
    cells[3].appendChild(badges(item.tag));
    let action = row ? row.lastElementChild : null;
    if (!action) {
      action = el("td");
      const button = el("button", "Read");
      button.type = "button";
      button.addEventListener("click", () => openEnvelope(item.id).catch(failed));
      action.appendChild(button);
      row = el("tr");
      row.dataset.id = item.id;
    }
    action.firstElementChild.setAttribute("aria-label", "Read " + (item.subject || item.id));
    row.dataset.kind = item.kind;
    row.dataset.signature = signature;
    row.className = "prec-" + item.precedence + (item.acked ? " acked" : "");
    row.replaceChildren(...cells, action);
    return row;
  }

  async function openEnvelope(id) {
    const why = $("read-reason").value.trim();
    const r = await api("GET", "/api/envelopes/" + encodeURIComponent(id) +
                        (why ? "?reason=" + encodeURIComponent(why) : ""));
    reading = r;
    $("reader").hidden = false;
    $("reader-subject").textContent = r.content.subject;
    const head = $("reader-head"); head.replaceChildren();
    const who = r.sender.officer + (r.sender.name ? " (" + r.sender.name + ", " + r.sender.role + ")" : "");
    [["From", who], ["To", r.recipients.join(", ")], ["Kind", r.kind + ", " + r.precedence],
     ["Sent", when(r.created)], ["Id", r.id]].concat(r.due ? [["Due", when(r.due)]] : [])
      .forEach(([k, v]) => { head.append(el("dt", k), el("dd", v)); });
    const tag = $("reader-tag"); tag.replaceChildren(badges(r.tag));
    tag.appendChild(el("p", r.tag.handling + ": " + r.tag.handling_meaning + ". TLP:" + r.tag.tlp +
      ": " + r.tag.tlp_meaning + ". Evaluation " + r.tag.evaluation + ": " +
      r.tag.evaluation_meaning + ". Owner " + r.tag.owner + ", purpose: " + r.tag.purpose +
      (r.tag.conditions ? ". Conditions: " + r.tag.conditions : "") +
      (r.tag.community ? ". Community: " + r.tag.community : "") +
      ". May reach: " + r.tag.share_with.join(", ") + ". Retained until " +
      when(r.tag.retain_until) + ".", "meaning"));
    const allows = $("reader-allows"); allows.replaceChildren();
    r.allows.forEach((a) => {
      allows.appendChild(el("li", (a.allowed ? "allowed: " : "not without consent: ") +
        a.action + " to " + a.target + (a.allowed ? "" : " (" + a.reason + ")")));
    });
    $("reader-text").textContent = r.content.text;
    const files = $("reader-attachments"); files.replaceChildren();
    r.content.attachments.forEach((a) => files.appendChild(
      el("li", "attachment: " + a.name + " (" + a.media_type + ", " + a.bytes + " bytes)")));
    $("reply-form").hidden = true;
    $("forward-form").hidden = true;
    const consentAsk = /^Consent request: forward (\S+) to (\S+)$/.exec(r.content.subject);
    $("reader-reply-open").hidden = r.kind !== "request" || !!consentAsk;
    $("grant-form").hidden = !consentAsk;
    if (consentAsk) {
      $("grant-forwarder").value = r.sender.officer;
      $("grant-target").value = consentAsk[2];
      $("grant-form").dataset.original = consentAsk[1];
    }
    $("reader-subject").tabIndex = -1;
    $("reader-subject").focus();
  }

  async function ackReading() {
    if (!reading) return;
    const r = await api("POST", "/api/envelopes/" + encodeURIComponent(reading.id) + "/ack");
    say(r.acked ? "Acknowledged." : "It was already acknowledged.", true);
    await loadInbox();
  }

  // --- compose -----------------------------------------------------------------------------

  function fillSelect(select, options, describe) {
    select.replaceChildren();
    options.forEach((o) => {
      const opt = el("option", String(o.value));
      opt.value = String(o.value);
      select.appendChild(opt);
    });
    if (describe) {
      const update = () => {
        const found = options.find((o) => String(o.value) === select.value);
        $(describe).textContent = found ? found.meaning : "";
      };
      select.addEventListener("change", update);
      update();
    }
  }

  function composeBody() {
    const split = (v) => v.split(",").map((s) => s.trim()).filter((s) => s);
    const permit = Array.from(document.querySelectorAll("#c-permit input:checked")).map((i) => i.value);
    return {
      to: split($("c-to").value), subject: $("c-subject").value, text: $("c-text").value,
      precedence: $("c-precedence").value, handling: $("c-handling").value,
      conditions: $("c-conditions").value, tlp: $("c-tlp").value,
      community: $("c-community").value, share_with: split($("c-share").value),
      source: $("c-source").value, accuracy: Number($("c-accuracy").value),
      permit: permit, purpose: $("c-purpose").value,
      retain_days: Number($("c-retain").value) || 90,
    };
  }

  function composeDefaults() {
    // As the CLI: TLP:AMBER, and an evaluation claimed only when the officer picks one.
    [["c-tlp", "AMBER"], ["c-source", "X"], ["c-accuracy", "4"]].forEach(([id, value]) => {
      $(id).value = value;
      $(id).dispatchEvent(new Event("change"));
    });
  }

  let checkTimer = null;
  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(() => checkCompose().catch(() => {}), 300);
  }

  async function checkCompose() {
    const body = composeBody();
    const out = $("compose-check");
    if (!body.to.length || !body.purpose) {
      out.textContent = "Name a recipient and a purpose; the tag is checked as you type.";
      out.className = "";
      return true;
    }
    try {
      const r = await api("POST", "/api/check", body);
      out.textContent = "The policy allows this tag for these recipients (reaches " +
        r.share_with.join(", ") + ").";
      out.className = "ok";
      return true;
    } catch (err) {
      out.textContent = "Refused before sending: " + err.message;
      out.className = "error";
      return false;
    }
  }

  async function sendCompose(ev) {
    ev.preventDefault();
    say("");
    if (!(await checkCompose())) { say($("compose-check").textContent, false); return; }
    try {
      const r = await api("POST", "/api/send", composeBody());
      $("compose-form").reset();
      composeDefaults();
      $("compose-check").textContent = "";
      show("sent");
      say("Sent " + r.id + " (" + r.status + ") to " + r.to.join(", ") + ".", true);
      await showTimeline(r.id);
    } catch (err) { failed(err); }
  }

  // --- sent and timeline -------------------------------------------------------------------

  async function loadSent() {
    const data = await api("GET", "/api/sent");
    const list = $("sent-list"); list.replaceChildren();
    data.sent.forEach((s) => {
      const item = el("li");
      const b = el("button", s.subject + " → " + s.to.join(", ") + " (" + when(s.sent) + ")");
      b.type = "button";
      b.addEventListener("click", () => showTimeline(s.id).catch(failed));
      item.appendChild(b); list.appendChild(item);
    });
    if (!data.sent.length) list.appendChild(el("li", "Nothing sent from this desk yet."));
  }

  async function showTimeline(id) {
    timelineId = id;
    $("timeline-id").value = id;
    const t = await api("GET", "/api/envelopes/" + encodeURIComponent(id) + "/timeline");
    const box = $("timeline"); box.replaceChildren();
    box.appendChild(el("h3", "Envelope " + t.id));
    if (t.four_eyes) box.appendChild(el("p", "four-eyes: " + t.four_eyes, "four-eyes"));
    if (!t.recipients.length) box.appendChild(el("p", "Not sent by you: only your node's view is shown."));
    t.recipients.forEach((p) => {
      const block = el("section", null, "recipient");
      block.dataset.officer = p.officer;
      block.appendChild(el("h4", p.officer + ": " + p.state));
      const ol = el("ol", null, "steps");
      p.steps.forEach((s) => {
        const li = el("li", s.step + ": " + (s.at ? when(s.at) : "not yet"), s.at ? "done" : "pending");
        li.dataset.step = s.step;
        ol.appendChild(li);
      });
      block.appendChild(ol);
      if (p.refused) block.appendChild(el("p", "refused: " + p.refused, "error"));
      if (p.expired) block.appendChild(el("p", "expired undelivered", "error"));
      box.appendChild(block);
    });
    box.appendChild(el("p", t.evidence.verified + " signed statement(s) verified" +
      (t.evidence.refused ? ", " + t.evidence.refused + " refused" : "") + "."));
    t.warnings.forEach((w) => box.appendChild(el("p", "warning: " + w, "error")));
  }

  // --- requests ----------------------------------------------------------------------------

  function countdown(due) {
    const left = due - Date.now();
    if (left <= 0) return "OVERDUE by " + Math.ceil(-left / 60000) + " min";
    const h = Math.floor(left / 3600000), m = Math.floor((left % 3600000) / 60000),
          s = Math.floor((left % 60000) / 1000);
    return h + " h " + m + " min " + s + " s";
  }

  async function loadRequests() {
    const data = await api("GET", "/api/requests");
    requests = data.requests;
    const body = document.querySelector("#requests-table tbody"); body.replaceChildren();
    requests.forEach((r) => {
      const row = el("tr");
      row.append(el("td", r.id), el("td", r.direction), el("td", r.officer), el("td", r.urgency));
      const due = el("td", r.answered ? "answered" : countdown(r.due), "due");
      due.dataset.due = r.due;
      due.dataset.answered = r.answered ? "1" : "";
      row.appendChild(due);
      const cell = el("td");
      const b = el("button", r.direction === "incoming" ? "Open and reply" : "Timeline");
      b.type = "button";
      b.addEventListener("click", () => {
        if (r.direction === "incoming") { show("inbox").then(() => openEnvelope(r.id)).catch(failed); }
        else { show("sent").then(() => showTimeline(r.id)).catch(failed); }
      });
      cell.appendChild(b); row.appendChild(cell); body.appendChild(row);
    });
    if (!requests.length) {
      const row = el("tr"); const c = el("td", "No open requests."); c.colSpan = 6;
      row.appendChild(c); body.appendChild(row);
    }
  }

  function tick() {
    document.querySelectorAll("#requests-table td.due").forEach((td) => {
      if (!td.dataset.answered) td.textContent = countdown(Number(td.dataset.due));
    });
  }

  async function sendReply(ev) {
    ev.preventDefault();
    if (!reading) return;
    try {
      const r = await api("POST", "/api/requests/" + encodeURIComponent(reading.id) + "/reply",
        { text: $("reply-text").value, late_reason: $("reply-late").value });
      say("Reply " + r.id + " " + r.status + (r.late ? " (late)" : "") + ".", true);
      $("reply-form").hidden = true;
    } catch (err) { failed(err); }
  }

  // --- forward and consent -----------------------------------------------------------------

  async function sendForward(ev) {
    ev.preventDefault();
    if (!reading) return;
    try {
      const r = await api("POST", "/api/envelopes/" + encodeURIComponent(reading.id) + "/forward",
        { to: $("forward-to").value.trim() });
      say("Forwarded as " + r.id + " (" + r.status + ")" + (r.consent ? " with the owner's consent" : "") + ".", true);
      $("forward-form").hidden = true;
    } catch (err) { failed(err); }
  }

  async function askConsent() {
    if (!reading) return;
    try {
      const r = await api("POST", "/api/envelopes/" + encodeURIComponent(reading.id) + "/consent-request",
        { to: $("forward-to").value.trim(), reason: $("forward-reason").value });
      say("Consent asked of " + r.owner + " (" + r.id + "); forward once it has arrived.", true);
    } catch (err) { failed(err); }
  }

  async function grantConsent(ev) {
    ev.preventDefault();
    const original = $("grant-form").dataset.original;
    try {
      const r = await api("POST", "/api/envelopes/" + encodeURIComponent(original) + "/consent-grant",
        { forwarder: $("grant-forwarder").value.trim(), target: $("grant-target").value.trim(),
          days: Number($("grant-days").value) || 7 });
      say("Consent sent to " + r.forwarder + " (" + r.id + ").", true);
      $("grant-form").hidden = true;
    } catch (err) { failed(err); }
  }

  // --- signals -----------------------------------------------------------------------------

  async function loadSignals() {
    const data = await api("GET", "/api/signals");
    const incoming = $("signals-incoming"); incoming.replaceChildren();
    data.incoming.forEach((s) => {
      const li = el("li", s.from + ": " + (s.subject || s.id) + " (" + when(s.received) + ") ");
      li.dataset.id = s.id;
      if (s.acked) li.appendChild(el("span", "acknowledged", "badge"));
      else {
        const b = el("button", "Acknowledge");
        b.type = "button";
        b.setAttribute("aria-label", "Acknowledge signal from " + s.from);
        b.addEventListener("click", async () => {
          try {
            await api("POST", "/api/envelopes/" + encodeURIComponent(s.id) + "/ack");
            say("Signal acknowledged; the sender is told in a signed notice.", true);
            await loadSignals();
          } catch (err) { failed(err); }
        });
        li.appendChild(b);
      }
      incoming.appendChild(li);
    });
    if (!data.incoming.length) incoming.appendChild(el("li", "No signals for your desk."));
    const raised = $("signals-raised"); raised.replaceChildren();
    data.raised.forEach((s) => raised.appendChild(el("li", s.id + " (" + s.severity +
      "): acknowledged by " + (s.acknowledged_by.join(", ") || "no desk yet"))));
    if (!data.raised.length) raised.appendChild(el("li", "None."));
    const matches = $("signals-matches"); matches.replaceChildren();
    data.matches.forEach((m) => matches.appendChild(el("li", "signals " + m.signals.join(", ") +
      " from " + m.countries.join(", ") + " concern the same person")));
    if (!data.matches.length) matches.appendChild(el("li", "None."));
  }

  async function raiseSignal(ev) {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/signals", {
        category: $("s-category").value, severity: $("s-severity").value,
        region: $("s-region").value, share_with: $("s-share").value, text: $("s-text").value,
        subject_name: $("s-name").value, subject_birth_date: $("s-birth").value,
        subject_document: $("s-document").value, justification: $("s-justification").value });
      say("Signal " + r.id + " raised for " + r.desks.join(", ") +
        (r.pseudonymised ? ", with the subject's pseudonym" : "") + ".", true);
      $("signal-form").reset();
      await loadSignals();
    } catch (err) { failed(err); }
  }

  // --- directory ---------------------------------------------------------------------------

  async function search(q) {
    const data = await api("GET", "/api/directory?q=" + encodeURIComponent(q));
    const body = document.querySelector("#directory-table tbody"); body.replaceChildren();
    data.officers.forEach((o) => {
      const row = el("tr", null, o.revoked ? "revoked" : "");
      row.append(el("td", o.officer + (o.revoked ? " (revoked)" : "")), el("td", o.name),
        el("td", o.role), el("td", o.posting || "–"), el("td", o.languages.join(", ") || "–"),
        el("td", o.coverage.join(", ") || "–"));
      body.appendChild(row);
    });
  }

  // --- live updates ------------------------------------------------------------------------

  function connect(delay) {
    const ws = new WebSocket("ws://" + location.host + "/ws");
    ws.addEventListener("open", () => { $("live").textContent = "live"; delay = 1000; });
    ws.addEventListener("message", (msg) => {
      let event = null;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      if (!event || event.type !== "inbox") return;
      $("live").textContent = "live: new " + event.kind + " from " + event.sender;
      if (!$("screen-inbox").hidden) loadInbox().catch(failed);
      if (!$("screen-signals").hidden) loadSignals().catch(failed);
      if (!$("screen-sent").hidden && timelineId) showTimeline(timelineId).catch(failed);
    });
    ws.addEventListener("close", () => {
      $("live").textContent = "offline: reconnecting…";
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    });
  }

  async function start() {
    session = await api("GET", "/api/session");
    csrf = session.csrf;
    $("whoami").textContent = "· " + session.officer;
    const c = session.choices;
    fillSelect($("c-handling"), c.handling, "c-handling-meaning");
    fillSelect($("c-tlp"), c.tlp, "c-tlp-meaning");
    fillSelect($("c-source"), c.source, "c-source-meaning");
    fillSelect($("c-accuracy"), c.accuracy, "c-accuracy-meaning");
    composeDefaults();
    fillSelect($("c-precedence"), session.precedences.map((p) => ({ value: p })), null);
    fillSelect($("s-category"), session.signal_categories.map((p) => ({ value: p })), null);
    fillSelect($("s-severity"), session.signal_severities.map((p) => ({ value: p })), null);
    const permit = $("c-permit");
    c.permit.forEach((p) => {
      const label = el("label");
      const box = el("input"); box.type = "checkbox"; box.value = p.value;
      label.append(box, " permit " + p.value + ": " + p.meaning);
      permit.appendChild(label);
    });
    document.querySelectorAll("nav button").forEach((b) =>
      b.addEventListener("click", () => { show(b.dataset.screen).catch(failed); }));
    $("inbox-refresh").addEventListener("click", () => loadInbox().catch(failed));
    $("inbox-all").addEventListener("change", () => loadInbox().catch(failed));
    $("reader-ack").addEventListener("click", () => ackReading().catch(failed));
    $("reader-reply-open").addEventListener("click", () => { $("reply-form").hidden = false; $("reply-text").focus(); });
    $("reader-forward-open").addEventListener("click", () => { $("forward-form").hidden = false; $("forward-to").focus(); });
    $("reply-form").addEventListener("submit", sendReply);
    $("forward-form").addEventListener("submit", sendForward);
    $("consent-ask").addEventListener("click", askConsent);
    $("grant-form").addEventListener("submit", grantConsent);
    $("compose-form").addEventListener("submit", sendCompose);
    $("compose-form").addEventListener("input", scheduleCheck);
    $("compose-form").addEventListener("change", scheduleCheck);
    $("timeline-form").addEventListener("submit", (ev) => {
      ev.preventDefault(); showTimeline($("timeline-id").value.trim()).catch(failed); });
    $("signal-form").addEventListener("submit", raiseSignal);
    $("directory-form").addEventListener("submit", (ev) => {
      ev.preventDefault(); search($("d-query").value).catch(failed); });
    setInterval(tick, 1000);
    connect(1000);
    await loadInbox();
  }

  document.addEventListener("DOMContentLoaded", () => { start().catch(failed); });
})();
