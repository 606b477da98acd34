// convlog audit console: plain DOM code, no build step. Every text from the table is
// inserted with textContent (never as HTML): items are written by tenants.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: null, cursor: null, session: null, timeline: null, timer: null, purge: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, params) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(`api/${path}?${query}`, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function summary(item) {
  if (item === null || typeof item !== "object") return JSON.stringify(item);
  if (typeof item.content === "string") return item.content;
  if (Array.isArray(item.content)) {
    return item.content.map((part) => part.text ?? JSON.stringify(part)).join(" ");
  }
  if (item.type === "function_call") return `${item.name}(${item.arguments ?? ""})`;
  if (item.type === "function_call_output") return `→ ${typeof item.output === "string" ? item.output : JSON.stringify(item.output)}`;
  return JSON.stringify(item);
}

function role(item) {
  return (item && (item.role || item.type)) || "item";
}

async function loadInfo() {
  try {
    const info = await api("info", {});
    const mode = info.read_only ? "read-only" : "admin";
    $("info").textContent = `table ${info.table} · ${mode}` + (info.tenant ? ` · tenant ${info.tenant}` : "");
    $("purge").hidden = info.read_only;
  } catch (error) { showError(error); }
}

async function loadSessions(more) {
  showError(null);
  const params = { user_id: state.user, limit: 20 };
  if (more && state.cursor) params.cursor = state.cursor;
  try {
    const page = await api("sessions", params);
    const list = $("sessions");
    if (!more) list.replaceChildren();
    if (!more && page.sessions.length === 0) {
      list.append(el("li", { class: "muted" }, `No sessions indexed for ${state.user}.`));
    }
    for (const s of page.sessions) {
      // a branch is its own partition, <session>#branch#<branch id>: its timeline is there
      const target = s.branch_id ? `${s.session_id}#branch#${s.branch_id}` : s.session_id;
      const button = el("button", { type: "button", "data-session": target },
        el("strong", {}, s.title || s.session_id), " ",
        el("code", {}, s.session_id), s.branch_id ? ` branch ${s.branch_id}` : "",
        el("span", { class: "change" }, `${s.item_count} items · ${s.usage.total_tokens} tokens in ${s.usage.requests} requests · last active ${s.last_active}`));
      button.addEventListener("click", () => openSession(target));
      list.append(el("li", {}, button));
    }
    state.cursor = page.cursor;
    $("more").hidden = !page.cursor;
    const first = list.querySelector("button");
    if (first && !more) first.focus();
  } catch (error) { showError(error); }
}

function describeChange(event) {
  const c = event.change;
  if (event.kind === "missing") return "missing from the log";
  if (event.kind === "corrupt") return "cannot be decoded";
  const parts = [];
  if (c.added.length) parts.push(`+${c.added.length}: ${c.added.map(summary).join(" | ")}`);
  if (c.removed.length) parts.push(`−${c.removed.length}: ${c.removed.map(summary).join(" | ")}`);
  if (!parts.length) parts.push("no change");
  return `${parts.join("  ")}  (${c.count_before} → ${c.count_after} items)`;
}

const LABEL = { ok: "✓ chain ok", broken: "✗ broken link", unverified: "? unverified", expired: "⌛ expired" };

function renderTimeline(timeline) {
  const list = $("timeline");
  list.replaceChildren();
  for (const event of timeline.events) {
    const button = el("button", { type: "button", "data-seq": String(event.seq) },
      el("span", { class: `badge ${event.status}` }, LABEL[event.status]),
      el("strong", {}, `seq ${event.seq}`), ` ${event.kind}`,
      event.ts ? el("span", { class: "muted" }, ` · ${event.ts}`) : "",
      el("span", { class: "change" }, describeChange(event)));
    button.title = event.hash ? `hash ${event.hash}` : "";
    button.addEventListener("click", () => { setPosition(event.seq); $("slider").focus(); });
    list.append(el("li", { class: event.status, "data-status": event.status, "data-seq": String(event.seq) }, button));
  }
}

function renderVerify(verify) {
  const box = $("verify");
  if (verify.ok) {
    box.className = "ok";
    box.textContent = `Hash chain intact: ${verify.events} events, seq ${verify.first_seq}..${verify.last_seq}` +
      (verify.expired_prefix ? ` (seq ${verify.expired_prefix[0]}..${verify.expired_prefix[1]} expired)` : "");
  } else {
    box.className = "broken";
    box.textContent = `Broken link at seq ${verify.problem.seq} (${verify.problem.kind}): ${verify.problem.message}`;
  }
}

async function renderTools(sessionId) {
  const list = $("tools");
  list.replaceChildren();
  try {
    const tools = await api("tools", { session_id: sessionId });
    if (!tools.entries.length) list.append(el("li", { class: "muted" }, "none"));
    for (const t of tools.entries) {
      list.append(el("li", {}, el("code", {}, t.tool_name), ` ${summary({ type: "function_call_output", output: t.output })}`,
        el("span", { class: "change" }, `created ${t.created} · hits ${t.hits}`)));
    }
  } catch (error) {
    list.append(el("li", { class: "muted" }, `not available: ${error.message}`));
  }
}

async function openSession(sessionId) {
  showError(null);
  try {
    const timeline = await api("timeline", { session_id: sessionId });
    state.session = sessionId;
    state.timeline = timeline;
    $("session").hidden = false;
    $("session-title").textContent = `Session ${sessionId}`;
    $("export").href = `api/export?${new URLSearchParams({ session_id: sessionId })}`;
    renderVerify(timeline.verify);
    renderTimeline(timeline);
    const last = timeline.events.length ? timeline.events[timeline.events.length - 1].seq : 0;
    const slider = $("slider");
    slider.max = String(last);
    await setPosition(last);
    renderTools(sessionId);
    slider.focus();
  } catch (error) { showError(error); }
}

async function setPosition(seq) {
  const slider = $("slider");
  slider.value = String(seq);
  $("position").textContent = `after seq ${seq} of ${slider.max}`;
  for (const button of $("timeline").querySelectorAll("button")) {
    const at = Number(button.dataset.seq);
    if (at === seq) button.setAttribute("aria-current", "step");
    else button.removeAttribute("aria-current");
    button.parentElement.classList.toggle("after", at > seq);
  }
  const session = state.session;
  try {
    const items = await api("items", { session_id: session, at_seq: seq });
    if (session !== state.session || Number(slider.value) !== seq) return;
    const list = $("state");
    list.replaceChildren();
    if (!items.items.length) list.append(el("li", { class: "muted" }, "no items"));
    const problem = state.timeline && state.timeline.verify.problem;
    items.items.forEach((item, i) => {
      const from = items.seqs[i];
      const proof = problem && from >= problem.seq ? (from === problem.seq ? "broken" : "unverified") : "ok";
      const li = el("li", { "data-seq": String(from), "data-proof": proof, class: proof },
        el("span", { class: "role" }, role(item)), summary(item));
      if (proof !== "ok") li.prepend(el("span", { class: `badge ${proof}` }, LABEL[proof]));
      li.title = `added by seq ${from}`;
      list.append(li);
    });
    list.dataset.seq = String(items.at_seq);
  } catch (error) { showError(error); }
}

async function post(path, body) {
  const response = await fetch(`api/${path}`, {
    method: "POST", body: JSON.stringify(body),
    headers: { Accept: "application/json", "Content-Type": "application/json" },
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || `${response.status} ${response.statusText}`);
  return answer;
}

function purgeError(error) {
  const box = $("purge-error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

async function planPurge() {
  purgeError(null);
  $("purge-result").textContent = "";
  const id = $("purge-id").value.trim();
  const target = $("purge-kind").value === "user" ? { user_id: id } : { session_id: id };
  try {
    const plan = await post("admin/purge/plan", target);
    state.purge = { target, plan };
    const counts = Object.entries(plan.counts).map(([kind, n]) => `${n} ${kind}`).join(", ");
    $("purge-summary").textContent = `${plan.items} items in ${plan.sessions.length} sessions (${counts}).`;
    const list = $("purge-sessions");
    list.replaceChildren();
    for (const sid of plan.sessions) {
      const others = plan.shared[sid];
      const li = el("li", { "data-session": sid }, el("code", {}, sid));
      if (others) {
        const who = Object.entries(others).map(([user, n]) => `${user}: ${n} events`).join(", ");
        li.append(el("span", { class: "change shared-note" }, `also holds other users' events — ${who}`));
      }
      list.append(li);
    }
    const shared = Object.keys(plan.shared).length > 0;
    $("purge-shared").hidden = !shared;
    for (const radio of document.querySelectorAll('input[name="shared"]')) radio.checked = false;
    $("purge-plan").hidden = false;
    $("purge-confirm").focus();
  } catch (error) { $("purge-plan").hidden = true; purgeError(error); }
}

async function confirmPurge() {
  purgeError(null);
  const { target, plan } = state.purge;
  const body = { ...target, confirm: plan.confirm };
  if (Object.keys(plan.shared).length) {
    const choice = document.querySelector('input[name="shared"]:checked');
    if (!choice) { purgeError("Choose what happens to the sessions shared with other users."); return; }
    body.shared = choice.value;
  }
  try {
    const done = await post("admin/purge", body);
    let text = `Deleted ${done.deleted} items of ${done.sessions.length} sessions.`;
    if (done.erased_content.length) {
      text += ` Erased the content of ${target.user_id} in ${done.erased_content.join(", ")} (${done.erased_events} events); other users' events and the hash chain are intact.`;
    }
    if (done.signed_digests.length) text += ` Signed purge record: digest ${done.signed_digests.join(", ")}.`;
    $("purge-result").textContent = text;
    $("purge-plan").hidden = true;
  } catch (error) { purgeError(error); }
}

function init() {
  $("user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.user = $("user").value.trim();
    state.cursor = null;
    loadSessions(false);
  });
  $("session-form").addEventListener("submit", (e) => {
    e.preventDefault();
    openSession($("session-input").value.trim());
  });
  $("more").addEventListener("click", () => loadSessions(true));
  $("purge-form").addEventListener("submit", (e) => { e.preventDefault(); planPurge(); });
  $("purge-confirm").addEventListener("click", confirmPurge);
  $("slider").addEventListener("input", () => {
    clearTimeout(state.timer);
    const seq = Number($("slider").value);
    $("position").textContent = `after seq ${seq} of ${$("slider").max}`;
    state.timer = setTimeout(() => setPosition(seq), 120);
  });
  const params = new URLSearchParams(location.search);
  if (params.get("user")) { $("user").value = params.get("user"); $("user-form").requestSubmit(); }
  if (params.get("session")) openSession(params.get("session"));
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
