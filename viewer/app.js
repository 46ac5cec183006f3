// stele viewer: a read-only page over the query API (GET /v1/events, GET
// /v1/events/{id}/proof). No build step, no dependencies: plain DOM and WebCrypto.
//
// Every value from the API is put on the page with textContent, never as markup:
// audit events carry whatever the emitting services put in them.
//
// "Verify proof" mirrors crates/client/src/proof.rs (verify_event_proof) check for
// check, in the same order:
//   1. the proof is about the event listed (same tenant, event_hash, received_at);
//   2. the leaf hash rebuilt from those three (crates/tlog/src/leaf.rs, v1) is the
//      one proven;
//   3. the tlog-proof text says what the JSON fields say;
//   4. the checkpoint note is signed by the trusted key (C2SP signed-note, Ed25519)
//      and is for the tenant's origin (<deployment origin>/tenant/<tenant>);
//   5. the RFC 6962 inclusion proof leads from the leaf to the signed root.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FILTERS = [
    "actor_id", "action", "category", "outcome",
    "resource_type", "resource_id", "correlation_id", "source_service",
  ];
  const SETTINGS = { "api-url": "api_url", "vkey": "vkey", "log-origin": "log_origin" };

  const state = {
    query: null,        // the parameters of the current search (cursors are bound to them)
    cursors: [null],    // cursors[i] fetches page i; page 0 has none
    page: 0,
    nextCursor: null,
    events: [],
    selected: null,
    rangeTouched: false, // untouched: each search is "the last 24 h" up to now
  };

  // ---------------------------------------------------------------- settings

  async function loadConfig() {
    // config.json beside the page: `stele dev` serves one with its log key and
    // origin; a static deployment may ship one (docs/viewer.md). Absent is fine.
    let config = {};
    try {
      const r = await fetch("config.json", { cache: "no-store" });
      if (r.ok) config = await r.json();
    } catch (_) { /* no config: the fields stay empty */ }
    for (const [id, key] of Object.entries(SETTINGS)) {
      const saved = sessionStorage.getItem("stele." + key);
      const value = saved !== null ? saved : (typeof config[key] === "string" ? config[key] : "");
      $(id).value = value;
      $(id).addEventListener("change", () => sessionStorage.setItem("stele." + key, $(id).value.trim()));
    }
    $("token").value = sessionStorage.getItem("stele.token") || "";
    $("token").addEventListener("change", () => sessionStorage.setItem("stele.token", $("token").value.trim()));
    if ($("token").value && $("vkey").value) $("settings").open = false;
  }

  function apiBase() {
    return $("api-url").value.trim().replace(/\/+$/, "");
  }

  async function api(path) {
    const token = $("token").value.trim();
    sessionStorage.setItem("stele.token", token);
    const headers = token ? { Authorization: "Bearer " + token } : {};
    try {
      return await fetch(apiBase() + path, { headers, cache: "no-store" });
    } catch (e) {
      throw new Error(
        `cannot reach the API at ${apiBase() || location.origin} (${e.message}); ` +
        "on another origin the API must allow this page by CORS");
    }
  }

  async function problem(resp) {
    const text = await resp.text();
    try {
      const body = JSON.parse(text);
      if (body && body.message) return `${resp.status} ${body.error || ""}: ${body.message}`;
    } catch (_) { /* not JSON */ }
    return `${resp.status} ${resp.statusText}${text ? ": " + text.slice(0, 300) : ""}`;
  }

  // ---------------------------------------------------------------- searching

  function toLocalInput(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
      `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function lastDay() {
    const to = new Date();
    $("to").value = toLocalInput(to);
    $("from").value = toLocalInput(new Date(to.getTime() - 24 * 3600 * 1000));
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function readQuery() {
    if (!state.rangeTouched) lastDay();
    const from = new Date($("from").value);
    const to = new Date($("to").value);
    if (isNaN(from) || isNaN(to)) throw new Error("the time range is incomplete");
    const q = new URLSearchParams();
    q.set("from", from.toISOString());
    q.set("to", to.toISOString());
    for (const name of FILTERS) {
      const v = $(name).value.trim();
      if (v) q.set(name, v);
    }
    q.set("order", $("order").value);
    q.set("limit", $("limit").value);
    return q;
  }

  async function search() {
    let q;
    try {
      q = readQuery();
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
    state.query = q;
    state.cursors = [null];
    state.page = 0;
    await fetchPage();
  }

  async function fetchPage() {
    const q = new URLSearchParams(state.query);
    const cursor = state.cursors[state.page];
    if (cursor) q.set("cursor", cursor);
    setStatus("Searching…");
    $("search-button").disabled = true;
    try {
      const resp = await api("/v1/events?" + q.toString());
      if (!resp.ok) {
        setStatus(await problem(resp), true);
        return;
      }
      const body = await resp.json();
      state.events = Array.isArray(body.events) ? body.events : [];
      state.nextCursor = typeof body.next_cursor === "string" ? body.next_cursor : null;
      render();
      const n = state.events.length;
      setStatus(n === 0 ? "No events in this range." :
        `${n} event${n === 1 ? "" : "s"} on page ${state.page + 1}` +
        (state.nextCursor ? " (more on the next page)" : ""));
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      $("search-button").disabled = false;
      // Counts finished searches, so a test (or a person) can tell an answer came.
      $("events").dataset.loaded = String(Number($("events").dataset.loaded || 0) + 1);
    }
  }

  function cell(tr, text, className) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (className) td.className = className;
    tr.appendChild(td);
  }

  function render() {
    const tbody = $("events").tBodies[0];
    tbody.replaceChildren();
    for (const ev of state.events) {
      const tr = document.createElement("tr");
      tr.dataset.eventId = ev.event_id;
      const resource = ev.resource ? `${ev.resource.type || ""}/${ev.resource.id || ""}` : "";
      cell(tr, String(ev.occurred_at || "").replace("T", " ").replace("Z", ""));
      cell(tr, ev.action, "action");
      cell(tr, ev.outcome, "outcome-" + ev.outcome);
      cell(tr, ev.category);
      cell(tr, ev.actor && ev.actor.id);
      cell(tr, resource);
      cell(tr, ev.event_id, "id");
      cell(tr, ev.leaf_index === null || ev.leaf_index === undefined ? "–" : ev.leaf_index);
      tr.addEventListener("click", () => showDetail(ev, tr));
      tbody.appendChild(tr);
    }
    $("page").textContent = `page ${state.page + 1}`;
    $("prev").disabled = state.page === 0;
    $("next").disabled = !state.nextCursor;
  }

  // ---------------------------------------------------------------- detail

  function showDetail(ev, tr) {
    state.selected = ev;
    for (const row of $("events").tBodies[0].rows) row.classList.remove("selected");
    tr.classList.add("selected");
    $("detail").hidden = false;
    $("detail-id").textContent = ev.event_id;
    $("detail-hash").textContent = ev.event_hash || "(none)";
    $("detail-json").textContent = JSON.stringify(ev, null, 2);
    $("verdict").hidden = true;
    $("verify-steps").replaceChildren();
    $("detail").scrollIntoView({ block: "nearest" });
  }

  function verdict(kind, text) {
    const v = $("verdict");
    v.hidden = false;
    v.className = kind;
    v.textContent = text;
  }

  function step(text, ok) {
    const li = document.createElement("li");
    li.textContent = text;
    li.className = ok ? "ok" : "bad";
    $("verify-steps").appendChild(li);
  }

  async function verifySelected() {
    const ev = state.selected;
    if (!ev) return;
    $("verify-steps").replaceChildren();
    $("verify").disabled = true;
    verdict("pending", "Fetching the proof…");
    try {
      const resp = await api(`/v1/events/${encodeURIComponent(ev.event_id)}/proof`);
      if (resp.status === 409) {
        verdict("pending", "Not yet checkpointed: " + await problem(resp));
        return;
      }
      if (!resp.ok) {
        verdict("failed", "No proof: " + await problem(resp));
        return;
      }
      const proof = await resp.json();
      const trust = { vkey: $("vkey").value.trim(), origin: $("log-origin").value.trim() };
      const r = await verifyEventProof(ev, proof, trust, step);
      const where = `leaf ${r.leafIndex} of ${ev.tenant_id}'s log, in the checkpoint of size ${r.treeSize} ` +
        `(root ${r.root})`;
      if (r.unchecked.length === 0) {
        verdict("verified", `Verified: ${where}, signed by ${r.keyName}.`);
      } else {
        verdict("partial", `Inclusion verified (${where}), but NOT fully: ${r.unchecked.join("; ")}.`);
      }
    } catch (e) {
      if (e instanceof ProofError) {
        step(e.message, false);
        verdict("failed", "Verification FAILED: " + e.message);
      } else {
        verdict("failed", "Could not verify: " + e.message);
      }
    } finally {
      $("verify").disabled = false;
    }
  }

  // ---------------------------------------------------------------- proof checks

  class ProofError extends Error {}
  const fail = (msg) => { throw new ProofError(msg); };
  const utf8 = new TextEncoder();

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));        // RFC 6962 leaf
  const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));          // RFC 6962 node

  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const b64 = (b) => btoa(String.fromCharCode(...b));

  // Standard base64 with padding, canonical (what the Rust side's decoder accepts).
  function unb64(text, what) {
    if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      fail(`${what} is not base64`);
    }
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    if (b64(bytes) !== text) fail(`${what} is not canonical base64`);
    return bytes;
  }

  function unb64Hash(text, what) {
    const b = unb64(text, what);
    if (b.length !== 32) fail(`${what} is not a 32-byte hash`);
    return b;
  }

  function eventHash(text, what) {
    if (typeof text !== "string" || !/^[0-9a-fA-F]{64}$/.test(text)) fail(`${what} \`${text}\` is not 64 hex digits`);
    return Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
  }

  // RFC 3339 (any offset) → microseconds since the epoch (BigInt), truncated like
  // stele_core::event::timestamp::parse. Date keeps milliseconds only, so the
  // fraction is added by hand.
  function micros(text, what) {
    const m = typeof text === "string" &&
      /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/.exec(text);
    if (!m) fail(`${what} \`${text}\` is not an RFC 3339 time`);
    const [, y, mo, d, h, mi, s, frac = "", z, sign, oh, om] = m;
    if (Number(s) > 59) fail(`${what} \`${text}\` is a leap second`);
    const date = new Date(0);
    date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
    date.setUTCHours(Number(h), Number(mi), Number(s), 0);
    if (date.getUTCDate() !== Number(d) || date.getUTCMonth() !== Number(mo) - 1) {
      fail(`${what} \`${text}\` is not a calendar date`);
    }
    let seconds = BigInt(date.getTime() / 1000);
    if (!z) {
      const offset = BigInt(Number(oh) * 3600 + Number(om) * 60);
      seconds = sign === "+" ? seconds - offset : seconds + offset;
    }
    return seconds * 1000000n + BigInt((frac + "000000").slice(0, 6));
  }

  // crates/tlog/src/leaf.rs, v1: "stele/leaf/v1" || u16 len || tenant || event_hash || i64 micros.
  function leafData(tenant, hash, receivedMicros) {
    const t = utf8.encode(tenant);
    if (t.length === 0 || t.length > 65535) fail("the tenant id is empty or longer than 65535 bytes");
    const len = new Uint8Array(2);
    new DataView(len.buffer).setUint16(0, t.length);
    const at = new Uint8Array(8);
    new DataView(at.buffer).setBigInt64(0, receivedMicros);
    return concat(utf8.encode("stele/leaf/v1"), len, t, hash, at);
  }

  const decimal = (s) => /^(0|[1-9][0-9]*)$/.test(s);

  // crates/tlog/src/tlog_proof.rs
  function parseTlogProof(text) {
    const header = "c2sp.org/tlog-proof@v1\n";
    if (typeof text !== "string" || !text.startsWith(header)) fail("tlog_proof: missing header");
    let rest = text.slice(header.length);
    const next = () => {
      const i = rest.indexOf("\n");
      if (i < 0) fail("tlog_proof: truncated");
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      return line;
    };
    let line = next();
    if (line.startsWith("extra ")) { unb64(line.slice(6), "tlog_proof extra"); line = next(); }
    if (!line.startsWith("index ") || !decimal(line.slice(6))) fail("tlog_proof: bad index line");
    const index = BigInt(line.slice(6));
    const proof = [];
    for (;;) {
      const l = next();
      if (l === "") break;
      proof.push(unb64Hash(l, "tlog_proof hash"));
    }
    return { index, proof, checkpoint: rest };
  }

  // crates/tlog/src/note.rs: text, blank line, "— <name> base64(key ID || signature)" lines.
  const validKeyName = (n) => n.length > 0 && !/[\s+]/u.test(n);

  function parseNote(msg) {
    if (/[\u0000-\u0009\u000b-\u001f]/.test(msg)) fail("checkpoint note: control character");
    const split = msg.lastIndexOf("\n\n");
    if (split < 0) fail("checkpoint note: no blank line before signatures");
    const text = msg.slice(0, split + 1);
    const sigs = msg.slice(split + 2);
    if (sigs === "") fail("checkpoint note: no signatures");
    if (!sigs.endsWith("\n")) fail("checkpoint note: signature block does not end in a newline");
    const signatures = [];
    for (const line of sigs.slice(0, -1).split("\n")) {
      if (signatures.length === 100) fail("checkpoint note: too many signatures");
      if (!line.startsWith("\u2014 ")) fail("checkpoint note: a line is not a signature");
      const rest = line.slice(2);
      const sp = rest.indexOf(" ");
      if (sp < 0) fail("checkpoint note: signature line has no space");
      const name = rest.slice(0, sp);
      if (!validKeyName(name)) fail("checkpoint note: invalid key name");
      const raw = unb64(rest.slice(sp + 1), "checkpoint signature");
      if (raw.length < 5) fail("checkpoint note: signature too short");
      const keyId = new DataView(raw.buffer).getUint32(0);
      signatures.push({ name, keyId, signature: raw.slice(4) });
    }
    return { text, signatures };
  }

  async function keyId(name, alg, publicKey) {
    const d = await sha256(concat(utf8.encode(name + "\n"), Uint8Array.of(alg), publicKey));
    return new DataView(d.buffer).getUint32(0);
  }

  // `<name>+<8 lowercase hex key ID>+<base64(0x01 || 32-byte Ed25519 key)>`
  async function parseVkey(vkey) {
    const a = vkey.indexOf("+");
    const b = a < 0 ? -1 : vkey.indexOf("+", a + 1);
    if (a < 0 || b < 0) fail("the log key is not a vkey (name+keyid+key)");
    const name = vkey.slice(0, a);
    const idHex = vkey.slice(a + 1, b);
    if (!/^[0-9a-f]{8}$/.test(idHex)) fail("the log key's key ID is not 8 lowercase hex digits");
    const raw = unb64(vkey.slice(b + 1), "the log key");
    if (raw.length === 0) fail("the log key is empty");
    if (!validKeyName(name)) fail("the log key's name is invalid");
    if (await keyId(name, raw[0], raw.slice(1)) !== parseInt(idHex, 16)) fail("the log key's key ID does not match its key");
    if (raw[0] !== 1) fail(`the log key's algorithm ${raw[0]} is not Ed25519`);
    if (raw.length !== 33) fail("the log key's Ed25519 key is not 32 bytes");
    return { name, keyId: parseInt(idHex, 16), publicKey: raw.slice(1) };
  }

  // crates/tlog/src/checkpoint.rs: origin, size, base64 root, [extensions].
  function parseCheckpoint(text) {
    if (!text.endsWith("\n")) fail("checkpoint: text does not end in a newline");
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) fail("checkpoint: fewer than three lines");
    if (lines.some((l) => l === "")) fail("checkpoint: empty line");
    if (!decimal(lines[1])) fail("checkpoint: tree size is not a decimal without leading zeros");
    return { origin: lines[0], size: BigInt(lines[1]), root: unb64Hash(lines[2], "checkpoint root") };
  }

  // RFC 9162 §2.1.3.2, as crates/tlog/src/proof.rs root_from_inclusion_proof.
  async function rootFromInclusion(index, size, leaf, proof) {
    if (index >= size) fail(`leaf index ${index} is not below the tree size ${size}`);
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0n) fail("the inclusion proof is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) fail("the inclusion proof is too short");
    return r;
  }

  // null when this browser's WebCrypto has no Ed25519 (Chromium before 137).
  async function ed25519Key(publicKey) {
    try {
      return await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      if (e.name === "NotSupportedError" || e.name === "SyntaxError" || e.name === "TypeError") return null;
      throw e;
    }
  }

  async function verifyEventProof(ev, proof, trust, report) {
    // 1. The proof is about the event listed.
    const tenant = ev.tenant_id;
    const subjectHash = eventHash(ev.event_hash, "the event's event_hash");
    const subjectTime = micros(ev.received_at, "the event's received_at");
    if (proof.tenant_id !== tenant) fail(`the proof is about another event: its tenant_id is ${proof.tenant_id}, the event's is ${tenant}`);
    if (!equal(eventHash(proof.event_hash, "the proof's event_hash"), subjectHash)) {
      fail(`the proof is about another event: its event_hash is ${proof.event_hash}, the event's is ${ev.event_hash}`);
    }
    if (micros(proof.received_at, "the proof's received_at") !== subjectTime) {
      fail(`the proof is about another event: its received_at is ${proof.received_at}, the event's is ${ev.received_at}`);
    }
    report("same tenant, event_hash and received_at as the event listed", true);

    // 2. The leaf hash, rebuilt from the event.
    const leaf = await leafHash(leafData(tenant, subjectHash, subjectTime));
    if (!equal(leaf, unb64Hash(proof.leaf_hash, "leaf_hash"))) {
      fail(`the leaf hash rebuilt from the event is ${b64(leaf)}, the proof's leaf hash is ${proof.leaf_hash}`);
    }
    report(`leaf hash rebuilt from the event: ${b64(leaf)}`, true);

    // 3. The tlog-proof text is what is checked; the JSON fields must say the same.
    const tlog = parseTlogProof(proof.tlog_proof);
    if (String(tlog.index) !== String(proof.leaf_index)) {
      fail(`the proof response is malformed: tlog_proof is for index ${tlog.index}, leaf_index is ${proof.leaf_index}`);
    }
    if (!proof.checkpoint || tlog.checkpoint !== proof.checkpoint.note) {
      fail("the proof response is malformed: tlog_proof carries another checkpoint than `checkpoint.note`");
    }
    const listed = tlog.proof.map(b64);
    if (!Array.isArray(proof.inclusion_proof) || listed.join(",") !== proof.inclusion_proof.join(",")) {
      fail("the proof response is malformed: tlog_proof carries another proof than `inclusion_proof`");
    }

    // 4. The checkpoint: signed by the trusted key, for this tenant's log.
    const unchecked = [];
    const note = parseNote(tlog.checkpoint);
    let keyName = null;
    if (!trust.vkey) {
      unchecked.push("the checkpoint signature was not checked (no log verifier key given)");
    } else {
      const key = await parseVkey(trust.vkey);
      const mine = note.signatures.filter((s) => s.name === key.name && s.keyId === key.keyId);
      if (mine.length === 0) {
        const found = note.signatures.map((s) => `${s.name}+${s.keyId.toString(16).padStart(8, "0")}`);
        fail(`the checkpoint is not signed by the trusted key (signed by: ${found.join(", ") || "nobody"})`);
      }
      const cryptoKey = await ed25519Key(key.publicKey);
      if (cryptoKey === null) {
        unchecked.push("the checkpoint signature was not checked (this browser has no Ed25519 in WebCrypto)");
      } else {
        // Duplicates of one key's line are skipped, as the Rust reader does.
        const sig = mine[0].signature;
        const ok = sig.length === 64 &&
          await crypto.subtle.verify({ name: "Ed25519" }, cryptoKey, sig, utf8.encode(note.text));
        if (!ok) fail(`the checkpoint signature by ${key.name}+${idHex(key.keyId)} is invalid`);
        keyName = `${key.name}+${idHex(key.keyId)}`;
        report(`checkpoint signature verified (Ed25519, key ${keyName})`, true);
      }
    }
    const cp = parseCheckpoint(note.text);
    if (!trust.origin) {
      unchecked.push(`the checkpoint origin \`${cp.origin}\` was not checked (no log origin given)`);
    } else {
      const want = `${trust.origin.replace(/\/+$/, "")}/tenant/${tenant}`;
      if (cp.origin !== want) fail(`the checkpoint is for the log ${cp.origin}, not ${want}`);
      report(`checkpoint is for the log ${cp.origin}`, true);
    }

    // 5. Inclusion: from the leaf to the signed root.
    const root = await rootFromInclusion(tlog.index, cp.size, leaf, tlog.proof);
    if (!equal(root, cp.root)) {
      fail(`the inclusion proof of leaf ${tlog.index} does not lead to the signed root of tree size ${cp.size}: ` +
        `it leads to ${b64(root)}, the checkpoint says ${b64(cp.root)}`);
    }
    report(`inclusion proof (${tlog.proof.length} hashes) leads from leaf ${tlog.index} to the root of size ${cp.size}`, true);
    return { leafIndex: tlog.index, treeSize: cp.size, root: b64(cp.root), keyName, unchecked };
  }

  const idHex = (id) => id.toString(16).padStart(8, "0");

  // ---------------------------------------------------------------- wiring

  document.addEventListener("DOMContentLoaded", async () => {
    lastDay();
    for (const id of ["from", "to"]) $(id).addEventListener("input", () => { state.rangeTouched = true; });
    $("reset-range").addEventListener("click", () => { state.rangeTouched = false; lastDay(); });
    $("search").addEventListener("submit", (e) => { e.preventDefault(); search(); });
    $("next").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.cursors = state.cursors.slice(0, state.page + 1);
      state.cursors.push(state.nextCursor);
      state.page += 1;
      fetchPage();
    });
    $("prev").addEventListener("click", () => {
      if (state.page === 0) return;
      state.page -= 1;
      fetchPage();
    });
    $("close-detail").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; });
    $("verify").addEventListener("click", verifySelected);
    await loadConfig();
  });

  // For tests and the console: the checks without the page.
  window.steleViewer = { verifyEventProof, micros, leafData };
})();
