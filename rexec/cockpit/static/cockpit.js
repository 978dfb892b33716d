// The rexec cockpit's web UI: plain JavaScript, no build step. It polls the JSON API
// every two seconds and renders with DOM calls only (never innerHTML with data), so a
// payload or an error text cannot inject markup.

const POLL_MS = 2000;
const TOKEN_KEY = "rexec.cockpit.token";
const STATES = ["ready", "scheduled", "locked", "suspended", "incident"];
const INTEGER = /^[+-]?\d{1,20}$/;

const view = {
  filters: { state: "ready", type: "", process_instance: "", priority_min: "", priority_max: "", sort: "queue" },
  offset: 0, // jobs before this page (shown as "51–100 of ...")
  limit: 50,
  after: null, // queue order pages by cursor: the cursor of this page
  cursors: [], // the cursors of the pages before (for "previous")
  next: null,
  tab: "jobs",
  paused: false,
  drawer: null, // {kind: "job" | "pi", id}
  clockOffset: 0, // server time minus this browser's
  types: [],
  timer: null,
};

const $ = (selector) => document.querySelector(selector);

// -- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function button(label, action, onclick, cls = "small") {
  return h("button", { type: "button", class: cls, dataset: { action }, onclick }, label);
}

function fmtNumber(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(r >= 10 ? 1 : 2);
}

function serverNow() {
  return Date.now() + view.clockOffset;
}

function fmtRelative(ms) {
  if (ms === null || ms === undefined) return "–";
  const diff = ms - serverNow();
  const abs = Math.abs(diff);
  let text;
  if (abs < 1000) return "now";
  if (abs < 60_000) text = `${Math.round(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.round(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${(abs / 3_600_000).toFixed(1)} h`;
  else text = `${(abs / 86_400_000).toFixed(1)} d`;
  return diff > 0 ? `in ${text}` : `${text} ago`;
}

function fmtTime(ms) {
  return ms === null || ms === undefined ? "–" : new Date(ms).toLocaleString();
}

function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const init = { method, headers };
    if (method === "POST" || method === "PUT") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body ?? {});
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `cannot reach the cockpit: ${err.message}`);
    }
    if (response.status === 401) {
      const asked = await askToken(token() ? "The cockpit refused this token." : null);
      if (!asked) throw new ApiError(401, "this cockpit needs a token");
      continue;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }
  throw new ApiError(401, "this cockpit needs a token");
}

let tokenPrompt = null;

function askToken(problem) {
  // One prompt at a time, however many requests were refused.
  tokenPrompt ??= ask({
    title: "Token required",
    message: (problem ? problem + " " : "") +
      "This cockpit is protected: enter the token it was started with. It is kept in this browser.",
    fields: [{ name: "token", label: "token", type: "password", required: true }],
    confirm: "Use token",
  }).then((values) => {
    tokenPrompt = null;
    if (!values) return false;
    localStorage.setItem(TOKEN_KEY, values.token.trim());
    showForgetToken();
    return true;
  });
  return tokenPrompt;
}

function showForgetToken() {
  $("#forget-token").hidden = !token();
}

// -- dialogs and toasts --------------------------------------------------------------------

let dialogOpen = false;

// Shows the modal dialog; resolves to the field values, or null when cancelled.
function ask({ title, message, fields = [], confirm = "OK", danger = false, validate }) {
  const dialog = $("#dialog");
  $("#dialog-title").textContent = title;
  $("#dialog-message").replaceChildren(...(Array.isArray(message) ? message : [message ?? ""]));
  const error = $("#dialog-error");
  error.hidden = true;
  const inputs = fields.map((field) => {
    const input = h("input", {
      name: field.name,
      type: field.type === "checkbox" ? "checkbox" : field.type === "password" ? "password" : "text",
      inputmode: field.type === "integer" ? "numeric" : null,
      required: field.required,
      autocomplete: "off",
    });
    if (field.type === "checkbox") input.checked = Boolean(field.value);
    else input.value = field.value ?? "";
    const label = field.type === "checkbox"
      ? h("label", { class: "check" }, input, " ", field.label)
      : h("label", {}, field.label, input);
    return { field, input, node: h("div", { class: "field" }, label, field.help ? h("small", {}, field.help) : null) };
  });
  $("#dialog-fields").replaceChildren(...inputs.map((i) => i.node));
  const ok = $("#dialog-ok");
  ok.textContent = confirm;
  ok.className = danger ? "danger" : "primary";
  const values = () => Object.fromEntries(inputs.map(({ field, input }) =>
    [field.name, field.type === "checkbox" ? input.checked : input.value.trim()]));
  return new Promise((resolve) => {
    const form = $("#dialog-form");
    const onSubmit = (event) => {
      if (event.submitter && event.submitter.value !== "ok") return;
      for (const { field, input } of inputs) {
        if (field.type === "integer" && !INTEGER.test(input.value.trim())) {
          event.preventDefault();
          error.textContent = `${field.label} must be a whole number`;
          error.hidden = false;
          input.focus();
          return;
        }
      }
      const problem = validate ? validate(values()) : null;
      if (problem) {
        event.preventDefault();
        error.textContent = problem;
        error.hidden = false;
      }
    };
    const onClose = () => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      dialogOpen = false;
      resolve(dialog.returnValue === "ok" ? values() : null);
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialogOpen = true;
    dialog.showModal();
    const first = inputs.find((i) => i.field.type !== "checkbox");
    if (first) first.input.select();
  });
}

function toast(text, kind = "ok") {
  const node = h("div", { class: `toast ${kind}` }, text);
  $("#toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 4000);
}

// Runs an action, reports it, and refreshes the page's data at once.
async function perform(label, action) {
  try {
    const result = await action();
    toast(label);
    await refresh();
    return result;
  } catch (err) {
    toast(err.message, "error");
    return null;
  }
}

function integerValue(text) {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text; // the API takes big integers as strings
}

// -- operator actions ------------------------------------------------------------------------

async function setJobPriority(job) {
  const values = await ask({
    title: `Priority of job ${job.id}`,
    message: `A ${job.type} job. Higher runs first; it is re-sorted at once.`,
    fields: [{ name: "priority", label: "priority", type: "integer", value: job.priority, required: true }],
    confirm: "Set priority",
  });
  if (!values) return;
  await perform(`job ${job.id}: priority ${values.priority}`, () =>
    api("PUT", `/api/jobs/${encodeURIComponent(job.id)}/priority`, { priority: integerValue(values.priority) }));
}

async function setJobRetries(job) {
  const values = await ask({
    title: `Retries of job ${job.id}`,
    message: job.state === "incident"
      ? "This job is an incident. Giving it retries resolves the incident: it runs again."
      : "Executions this job may still have before it becomes an incident.",
    fields: [{ name: "retries", label: "retries", type: "integer", value: Math.max(job.retries, 1), required: true }],
    confirm: job.state === "incident" ? "Resolve incident" : "Set retries",
  });
  if (!values) return;
  await perform(`job ${job.id}: ${values.retries} retries`, () =>
    api("PUT", `/api/jobs/${encodeURIComponent(job.id)}/retries`, { retries: integerValue(values.retries) }));
}

async function toggleJobSuspension(job) {
  const suspend = !job.suspended;
  await perform(`job ${job.id}: ${suspend ? "suspended" : "active"}`, () =>
    api("POST", `/api/jobs/${encodeURIComponent(job.id)}/${suspend ? "suspend" : "activate"}`));
}

async function deleteJob(job) {
  const values = await ask({
    title: `Delete job ${job.id}?`,
    message: `The ${job.type} job is removed for good, whatever its state${job.state === "locked" ? " (it is running now: its worker's result will be refused)" : ""}. This cannot be undone.`,
    confirm: "Delete job",
    danger: true,
  });
  if (!values) return;
  const done = await perform(`job ${job.id}: deleted`, () => api("DELETE", `/api/jobs/${encodeURIComponent(job.id)}`));
  if (done && view.drawer && view.drawer.kind === "job" && view.drawer.id === job.id) closeDrawer();
}

function typeCount(type, state) {
  return type.counts ? type.counts[state] : null;
}

async function overrideType(type) {
  const existing = type.counts ? type.counts.total : null;
  const values = await ask({
    title: `Overriding priority of ${type.type}`,
    message: "New jobs of this type get this priority, whatever else applies. With cascade, every existing job of the type gets it too.",
    fields: [
      { name: "priority", label: "priority", type: "integer", value: type.overriding_priority ?? "", required: true },
      {
        name: "cascade",
        label: existing === null ? "cascade to the existing jobs" : `cascade to the ${fmtNumber(existing)} existing jobs`,
        type: "checkbox",
        value: false,
        help: "Cascading re-sorts every queued job of the type at once.",
      },
    ],
    confirm: "Override priority",
  });
  if (!values) return;
  const result = await perform(`${type.type}: overriding priority ${values.priority}`, () =>
    api("PUT", `/api/types/${encodeURIComponent(type.type)}/overriding-priority`,
      { priority: integerValue(values.priority), cascade: values.cascade }));
  if (result && values.cascade) toast(`${type.type}: ${fmtNumber(result.changed)} existing jobs re-sorted`);
}

async function clearOverride(type) {
  const values = await ask({
    title: `Clear the overriding priority of ${type.type}?`,
    message: "New jobs get their priority as usual again; existing jobs keep the one they have.",
    confirm: "Clear override",
  });
  if (!values) return;
  await perform(`${type.type}: overriding priority cleared`, () =>
    api("DELETE", `/api/types/${encodeURIComponent(type.type)}/overriding-priority`));
}

async function toggleTypeSuspension(type) {
  const suspend = !type.suspended;
  const values = await ask({
    title: `${suspend ? "Suspend" : "Activate"} job type ${type.type}?`,
    message: suspend
      ? "No job of this type will be acquired until the type is activated again. Running jobs finish."
      : "Its jobs are acquired again, in their original order.",
    fields: [{
      name: "include_jobs",
      label: suspend ? "suspend each of its jobs too" : "activate its suspended jobs too",
      type: "checkbox",
      value: true,
    }],
    confirm: suspend ? "Suspend type" : "Activate type",
    danger: suspend,
  });
  if (!values) return;
  await perform(`${type.type}: ${suspend ? "suspended" : "active"}`, () =>
    api("POST", `/api/types/${encodeURIComponent(type.type)}/${suspend ? "suspend" : "activate"}`,
      { include_jobs: values.include_jobs }));
}

// -- rendering: overview ---------------------------------------------------------------------

function renderOverview(data) {
  view.clockOffset = data.now_ms - Date.now();
  view.types = data.types;
  $("#namespace").textContent = data.namespace;
  document.title = `rexec cockpit · ${data.namespace}`;
  const counts = data.by_state;
  $("#state-cards").replaceChildren(
    ...STATES.map((state) => h("button", {
      type: "button",
      class: `card state-${state}${view.filters.state === state ? " selected" : ""}`,
      dataset: { state },
      title: `show ${state} jobs`,
      onclick: () => setFilters({ state }),
    }, h("span", { class: "card-value" }, fmtNumber(counts[state])), h("span", { class: "card-label" }, state))),
    h("button", {
      type: "button",
      class: `card total${view.filters.state === "all" ? " selected" : ""}`,
      onclick: () => setFilters({ state: "all" }),
    }, h("span", { class: "card-value" }, fmtNumber(counts.total)), h("span", { class: "card-label" }, "all jobs")),
  );
  const incidents = counts.incident;
  $("#incident-banner").hidden = !incidents;
  $("#incident-count").textContent = `${fmtNumber(incidents)} incident${incidents === 1 ? "" : "s"}`;
  renderTypes(data);
}

function renderTypes(data) {
  $("#types-note").hidden = data.by_type !== null;
  $("#types-note").textContent = "Too many jobs to count by type; the totals above are exact.";
  const rows = data.types.map((type) => {
    const override = type.overriding_priority;
    return h("tr", { dataset: { type: type.type }, class: type.suspended ? "suspended" : null },
      h("td", { class: "type-cell" },
        h("a", { href: "#", class: "type-link", title: `show the ${type.type} jobs`, onclick: (e) => { e.preventDefault(); setFilters({ type: type.type }); } }, type.type),
        type.suspended ? h("span", { class: "badge state-suspended" }, "suspended") : null,
        override === null ? null : h("span", { class: "badge override", title: "overriding priority: new jobs of this type get it" }, "priority ", h("b", { class: "override-value" }, String(override))),
        h("div", { class: "type-actions" },
          button("Override priority…", "override", () => overrideType(type)),
          override === null ? null : button("Clear override", "clear-override", () => clearOverride(type)),
          button(type.suspended ? "Activate…" : "Suspend…", type.suspended ? "activate" : "suspend",
            () => toggleTypeSuspension(type)))),
      ...["ready", "scheduled", "locked", "suspended", "incident"].map((state) => {
        const n = typeCount(type, state);
        return h("td", { class: `num${state === "incident" && n ? " alert" : ""}` }, fmtNumber(n));
      }));
  });
  $("#types-table tbody").replaceChildren(...rows);
  if (!rows.length) {
    $("#types-table tbody").append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No job types yet.")));
  }
  const select = $("#filters select[name=type]");
  const chosen = view.filters.type;
  const names = data.types.map((t) => t.type);
  if (chosen && !names.includes(chosen)) names.push(chosen);
  const current = Array.from(select.options).slice(1).map((o) => o.value);
  if (current.join("\n") !== names.join("\n")) {
    select.replaceChildren(h("option", { value: "" }, "all types"), ...names.map((n) => h("option", { value: n }, n)));
  }
  select.value = chosen;
}

// -- rendering: jobs --------------------------------------------------------------------------

function jobsQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(view.filters)) if (value) params.set(name, value);
  params.set("limit", view.limit);
  if (view.filters.sort === "queue" && !view.filters.process_instance) {
    if (view.after) params.set("after", view.after); // keyset: any depth costs one page
  } else {
    params.set("offset", view.offset);
  }
  return params.toString();
}

function renderJobs(data) {
  const rows = data.jobs.map((job) => h("tr", {
    dataset: { jobId: job.id, state: job.state },
    class: `job state-${job.state}`,
    onclick: (e) => { if (!e.target.closest("button, a")) openDrawer("job", job.id); },
  },
  h("td", { class: "num mono" }, job.id),
  h("td", { title: job.type }, job.type),
  h("td", {}, stateBadge(job.state), job.lock_owner ? h("div", { class: "small muted mono lock-owner", title: job.lock_owner }, job.lock_owner) : null),
  h("td", { class: "num mono priority" }, String(job.priority)),
  h("td", { class: "nowrap", title: fmtTime(job.due_ms) }, fmtRelative(job.due_ms)),
  h("td", { class: `num${job.retries === 0 ? " alert" : ""}` }, String(job.retries)),
  h("td", {}, job.process_instance_id
    ? h("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); openDrawer("pi", job.process_instance_id); } }, job.process_instance_id)
    : "–"),
  h("td", { class: "preview" }, job.exception
    ? h("span", { class: "exception", title: job.exception }, job.exception)
    : h("span", { class: "mono", title: job.payload_preview ?? "" }, job.payload_preview ?? "–")),
  h("td", { class: "actions" }, job.state === "incident"
    ? button("Retry…", "retries", () => setJobRetries(job), "small danger")
    : button("Priority…", "priority", () => setJobPriority(job)))));
  $("#jobs-table tbody").replaceChildren(...rows);
  $("#jobs-empty").hidden = rows.length > 0;
  const first = data.jobs.length ? view.offset + 1 : 0;
  const last = view.offset + data.jobs.length;
  const of = data.total === null ? (data.more ? "many" : String(last)) : fmtNumber(data.total);
  $("#page-info").textContent = `${fmtNumber(first)}–${fmtNumber(last)} of ${of}${data.truncated ? " (sorted among the first 5,000 per state)" : ""}`;
  $("#prev").disabled = view.offset === 0;
  $("#next").disabled = !data.more;
  view.next = data.next ?? null;
}

function resetPaging() {
  view.offset = 0;
  view.after = null;
  view.cursors = [];
  view.next = null;
}

function nextPage() {
  if (view.filters.sort === "queue" && !view.filters.process_instance) {
    if (!view.next) return;
    view.cursors.push(view.after);
    view.after = view.next;
  }
  view.offset += view.limit;
  refresh();
}

function previousPage() {
  if (view.filters.sort === "queue" && !view.filters.process_instance) {
    view.after = view.cursors.length ? view.cursors.pop() : null;
  }
  view.offset = Math.max(0, view.offset - view.limit);
  if (view.offset === 0) resetPaging();
  refresh();
}

function setFilters(changes) {
  Object.assign(view.filters, changes);
  resetPaging();
  const form = $("#filters");
  for (const [name, value] of Object.entries(view.filters)) {
    const field = form.elements.namedItem(name);
    if (field && field.value !== value) field.value = value;
  }
  if (view.tab !== "jobs") showTab("jobs");
  refresh();
}

// -- rendering: details --------------------------------------------------------------------------

function openDrawer(kind, id) {
  view.drawer = { kind, id };
  $("#drawer").hidden = false;
  $("#drawer-title").textContent = kind === "job" ? `Job ${id}` : `Process instance ${id}`;
  $("#drawer-body").replaceChildren(h("p", { class: "muted" }, "loading…"));
  refreshDrawer();
}

function closeDrawer() {
  view.drawer = null;
  $("#drawer").hidden = true;
}

function fields(pairs) {
  return h("dl", { class: "fields" }, ...pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

function renderJobDetail(job) {
  const body = [
    h("div", { class: "drawer-actions" },
      button("Set priority…", "priority", () => setJobPriority(job), "primary"),
      button(job.state === "incident" ? "Resolve incident…" : "Set retries…", "retries", () => setJobRetries(job), ""),
      button(job.suspended ? "Activate" : "Suspend", job.suspended ? "activate" : "suspend", () => toggleJobSuspension(job), ""),
      button("Delete…", "delete", () => deleteJob(job), "danger")),
    fields([
      ["state", stateBadge(job.state)],
      ["type", job.type],
      ["priority", h("span", { class: "mono" }, String(job.priority))],
      ["due", `${fmtRelative(job.due_ms)} · ${fmtTime(job.due_ms)}`],
      ["retries left", String(job.retries)],
      ["exclusive", job.exclusive ? "yes" : "no"],
      ["process instance", job.process_instance_id
        ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); openDrawer("pi", job.process_instance_id); } }, job.process_instance_id)
        : "–"],
      ["lock owner", job.lock_owner ?? "–"],
      ["lock expires", job.lock_expires_ms ? fmtRelative(job.lock_expires_ms) : "–"],
      ["revision", String(job.revision)],
    ]),
  ];
  if (job.exception) {
    body.push(h("h3", { class: "alert" }, "Last failure"), h("p", { class: "exception" }, job.exception));
    if (job.traceback) body.push(h("pre", { class: "traceback" }, job.traceback));
  }
  body.push(h("h3", {}, "Payload", job.payload_bytes !== null ? h("span", { class: "muted small" }, ` ${fmtNumber(job.payload_bytes)} bytes`) : null));
  if (job.payload_error) body.push(h("p", { class: "alert" }, job.payload_error));
  body.push(h("pre", { class: "payload" }, job.payload_preview ?? "(none)"));
  if (job.payload_truncated) body.push(h("p", { class: "muted small" }, "(preview truncated)"));
  $("#drawer-body").replaceChildren(...body);
}

function renderInstance(pi) {
  const rows = pi.jobs.map((job) => h("tr", { dataset: { jobId: job.id }, onclick: () => openDrawer("job", job.id) },
    h("td", { class: "num mono" }, job.id), h("td", {}, job.type), h("td", {}, stateBadge(job.state)),
    h("td", { class: "num mono" }, String(job.priority)), h("td", {}, fmtRelative(job.due_ms))));
  $("#drawer-body").replaceChildren(...[
    fields([["revision", String(pi.revision)], ["jobs", fmtNumber(pi.jobs_total ?? pi.jobs.length)]]),
    h("div", { class: "drawer-actions" }, button("Show its jobs in the list", "filter-pi",
      () => setFilters({ state: "all", process_instance: pi.id, type: "" }))),
    h("h3", {}, "Variables"),
    pi.variables_error ? h("p", { class: "alert" }, pi.variables_error) : null,
    h("pre", { class: "payload" }, JSON.stringify(pi.variables, null, 2)),
    h("h3", {}, "Jobs"),
    rows.length
      ? h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ...["id", "type", "state", "priority", "due"].map((t) => h("th", {}, t)))), h("tbody", {}, ...rows))
      : h("p", { class: "muted" }, "No jobs left."),
  ].filter(Boolean));
}

async function refreshDrawer() {
  const drawer = view.drawer;
  if (!drawer) return;
  try {
    if (drawer.kind === "job") {
      const job = await api("GET", `/api/jobs/${encodeURIComponent(drawer.id)}`);
      if (view.drawer === drawer) renderJobDetail(job);
    } else {
      const pi = await api("GET", `/api/process-instances/${encodeURIComponent(drawer.id)}`);
      if (view.drawer === drawer) renderInstance(pi);
    }
  } catch (err) {
    if (view.drawer !== drawer) return;
    const gone = err.status === 404 ? " — completed or deleted" : "";
    $("#drawer-body").replaceChildren(h("p", { class: "alert" }, err.message + gone));
  }
}

// -- rendering: cluster ------------------------------------------------------------------------

const RATE_COLUMNS = [
  ["job-successful", "done/s"],
  ["job-failed", "failed/s"],
  ["job-acquired-success", "acquired/s"],
  ["job-acquired-failure", "lock fail/s"],
  ["job-execution-rejected", "rejected/s"],
  ["job-acquisition-attempt", "cycles/s"],
];

function renderCluster(data) {
  const rates = data.rates || {};
  const summary = [
    ["live workers", fmtNumber(data.workers)],
    ["nodes", fmtNumber(data.nodes.length)],
    ["jobs done / s", fmtRate(data.throughput_per_s)],
    ["acquired / s", fmtRate(rates["job-acquired-success"])],
    ["lock failures / s", fmtRate(rates["job-acquired-failure"])],
    ["rejected / s", fmtRate(rates["job-execution-rejected"])],
    ["locks expired / s", fmtRate(rates["lock-expired"])],
  ];
  $("#cluster-summary").replaceChildren(...summary.map(([label, value]) =>
    h("div", { class: "card static" }, h("span", { class: "card-value" }, value), h("span", { class: "card-label" }, label))));
  const nodes = data.nodes.map((node) => {
    const nodeRates = node.rates || {};
    const workers = node.workers.map((w) => h("tr", {},
      h("td", { class: "mono" }, w.id),
      h("td", { class: "num" }, String(w.pid ?? "–")),
      h("td", { class: "num" }, String(w.concurrency ?? "–")),
      h("td", {}, Array.isArray(w.types) && w.types.length ? w.types.join(", ") : "all"),
      h("td", {}, w.acquisition ?? "–"),
      h("td", { class: "num" }, String(w.idle_level ?? 0)),
      h("td", { class: "num" }, String(w.backoff_level ?? 0)),
      h("td", { class: `num${w.heartbeat_age_ms > 5000 ? " alert" : ""}` }, `${(w.heartbeat_age_ms / 1000).toFixed(1)} s ago`)));
    return h("div", { class: "node" },
      h("h3", {}, node.node, h("span", { class: "muted small" }, ` · ${node.workers.length} worker process${node.workers.length === 1 ? "" : "es"}`)),
      h("div", { class: "rates" }, ...RATE_COLUMNS.map(([name, label]) =>
        h("span", {}, h("b", {}, fmtRate(nodeRates[name])), " ", label))),
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ...["worker", "pid", "slots", "types", "acquisition", "idle lvl", "backoff lvl", "heartbeat"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...workers)));
  });
  $("#nodes").replaceChildren(...(nodes.length ? nodes : [h("p", { class: "empty" }, "No live worker processes. Start one with: rexec worker module:app")]));
  $("#counters-table tbody").replaceChildren(...Object.entries(data.counters).map(([name, total]) =>
    h("tr", {}, h("td", { class: "mono" }, name), h("td", { class: "num" }, fmtNumber(total)), h("td", { class: "num" }, fmtRate(rates[name])))));
  const buckets = (data.histograms && data.histograms["pickup-latency"]) || [];
  const peak = Math.max(1, ...buckets.map((b) => b.count));
  $("#latency").replaceChildren(...(buckets.length ? buckets.map((b) => h("div", { class: "bar-row" },
    h("span", { class: "bar-label" }, b.le_ms === null ? "slower" : `≤ ${fmtNumber(b.le_ms)} ms`),
    h("span", { class: "bar" }, h("span", { style: `width: ${(100 * b.count) / peak}%` })),
    h("span", { class: "num" }, fmtNumber(b.count)))) : [h("p", { class: "muted" }, "No jobs picked up yet.")]));
  if (data.window_s === null) {
    $("#cluster-summary").append(h("p", { class: "muted small" }, "Rates appear after the next update."));
  }
}

// The schedules with their next runs, in their own timezone and in UTC.
function renderPeriodic(data) {
  const rows = data.schedules.map((s) => h("tr", {},
    h("td", { class: "mono" }, s.name),
    h("td", { class: "mono" }, s.type),
    h("td", { class: "mono" }, `${s.cron} (${s.timezone})`),
    h("td", {}, s.next_local ? s.next_local.replace("T", " ") : "–"),
    h("td", {}, s.next_utc ? s.next_utc.replace("T", " ") : "–"),
    h("td", {}, s.last_tick_ms === null ? "–" : `${fmtTime(s.last_tick_ms)} ${s.last_outcome}${s.last_job_id ? ` (job ${s.last_job_id})` : ""}`),
    h("td", {}, s.catch_up ? "yes" : "no")));
  $("#periodic-table tbody").replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No periodic schedules. Declare one with app.periodic(...) and deploy the app."))]));
}

// -- rendering: charts ---------------------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f5fd0", "#1f8a4c", "#c62828", "#9a5b00", "#7b3fb5", "#0f8a8a", "#c2185b", "#5a6b8c"];
const STATE_COLORS = { ready: "#1f8a4c", scheduled: "#5a6b8c", locked: "#9a5b00", suspended: "#7a7f88", incident: "#c62828" };

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function fmtAxis(value, unit) {
  if (value >= 1000) return `${fmtNumber(Math.round(value))}${unit}`;
  return `${Number(value.toFixed(value < 10 ? 2 : 1))}${unit}`;
}

// A line chart of several series over the same times; null points are gaps.
function lineChart(times, series, { unit = "", colors = {} } = {}) {
  const names = Object.keys(series);
  const points = names.flatMap((name) => series[name].filter((v) => v !== null));
  if (!points.length) {
    return h("p", { class: "muted chart-empty" }, "No samples yet: running workers record one every 10 seconds.");
  }
  const width = 640, height = 200, left = 56, right = 8, top = 8, bottom = 22;
  const max = Math.max(...points) * 1.1 || 1;
  const x = (i) => left + (i * (width - left - right)) / Math.max(1, times.length - 1);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "data-points": String(points.length) });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid-line" }));
    chart.append(svg("text", { x: left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, fmtAxis(value, unit)));
  }
  const span = times.length ? (times[times.length - 1] - times[0]) / 60000 : 0;
  chart.append(svg("text", { x: left, y: height - 4, class: "axis" }, `${Math.round(span)} min ago`));
  chart.append(svg("text", { x: width - right, y: height - 4, class: "axis", "text-anchor": "end" }, "now"));
  const legend = [];
  names.forEach((name, index) => {
    const color = colors[name] ?? PALETTE[index % PALETTE.length];
    let d = "";
    let pen = false;
    series[name].forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)} ${y(v).toFixed(1)} `;
      pen = true;
    });
    if (d) chart.append(svg("path", { d, class: "series", stroke: color, "data-series": name }));
    const last = [...series[name]].reverse().find((v) => v !== null);
    legend.push(h("span", { class: "legend-item" }, h("i", { style: `background: ${color}` }), `${name} `,
      h("b", {}, last === undefined ? "–" : fmtAxis(last, unit))));
  });
  return h("div", {}, chart, h("div", { class: "legend" }, ...legend));
}

// Charts start at the first sample (at least 5 minutes back), so a young series is legible.
function sinceFirstSample(data) {
  const groups = [data.throughput_per_s, data.depth, data.pickup_latency_ms, data.node_rates_per_s];
  let first = data.times_ms.length;
  for (const group of groups) {
    for (const points of Object.values(group)) {
      const i = points.findIndex((v) => v !== null);
      if (i >= 0) first = Math.min(first, i);
    }
  }
  const from = Math.max(0, Math.min(first, data.times_ms.length - 30));
  const cut = (group) => Object.fromEntries(Object.entries(group).map(([k, v]) => [k, v.slice(from)]));
  return {
    times: data.times_ms.slice(from),
    throughput: cut(data.throughput_per_s),
    depth: cut(data.depth),
    latency: cut(data.pickup_latency_ms),
    nodes: cut(data.node_rates_per_s),
  };
}

function renderCharts(data) {
  const c = sinceFirstSample(data);
  $("#chart-throughput").replaceChildren(lineChart(c.times, c.throughput, { unit: "/s" }));
  $("#chart-depth").replaceChildren(lineChart(c.times, c.depth, { colors: STATE_COLORS }));
  $("#chart-latency").replaceChildren(lineChart(c.times, c.latency, { unit: " ms" }));
  $("#chart-nodes").replaceChildren(lineChart(c.times, c.nodes, { unit: "/s" }));
}

// -- the poll loop ---------------------------------------------------------------------------

// At most one refresh runs and one waits: a refresh asked for during another (after an
// action, say) starts when that one ends, so it shows the action's effect.
let running = Promise.resolve();
let queued = null;

function refresh() {
  if (queued) return queued;
  queued = running.then(() => {
    queued = null;
    return load();
  });
  running = queued.catch(() => {});
  return queued;
}

async function load() {
  try {
    const requests = [api("GET", "/api/overview"), api("GET", `/api/jobs?${jobsQuery()}`)];
    if (view.tab === "cluster") requests.push(api("GET", "/api/cluster"), api("GET", "/api/periodic"));
    if (view.tab === "charts") requests.push(api("GET", "/api/series"));
    const [overview, jobs, extra, periodic] = await Promise.all(requests);
    renderOverview(overview);
    renderJobs(jobs);
    if (view.tab === "cluster" && extra) renderCluster(extra);
    if (view.tab === "cluster" && periodic) renderPeriodic(periodic);
    if (view.tab === "charts" && extra) renderCharts(extra);
    await refreshDrawer();
    $("#error-bar").hidden = true;
    const live = $("#live");
    live.className = view.paused ? "live paused" : "live";
    live.textContent = `${view.paused ? "paused" : "live"} · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("#error-bar").hidden = false;
    $("#error-bar").textContent = err.message;
    $("#live").className = "live down";
    $("#live").textContent = "not updating";
    if (err.status === 400) $("#jobs-table tbody").replaceChildren();
  }
}

function schedule() {
  clearTimeout(view.timer);
  view.timer = setTimeout(async () => {
    if (!view.paused && !document.hidden && !dialogOpen) await refresh();
    schedule();
  }, POLL_MS);
}

function showTab(tab) {
  view.tab = tab;
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  $("#tab-jobs").hidden = tab !== "jobs";
  $("#tab-cluster").hidden = tab !== "cluster";
  $("#tab-charts").hidden = tab !== "charts";
}

function init() {
  const form = $("#filters");
  let typing = null;
  form.addEventListener("input", (event) => {
    const { name, value } = event.target;
    clearTimeout(typing);
    const text = event.target.tagName === "INPUT";
    typing = setTimeout(() => setFilters({ [name]: value.trim() }), text ? 400 : 0);
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  form.addEventListener("reset", (e) => {
    e.preventDefault();
    setFilters({ state: "ready", type: "", process_instance: "", priority_min: "", priority_max: "", sort: "queue" });
  });
  $("#prev").addEventListener("click", previousPage);
  $("#next").addEventListener("click", nextPage);
  $("#page-size").addEventListener("change", (e) => { view.limit = Number(e.target.value); resetPaging(); refresh(); });
  $("#show-incidents").addEventListener("click", () => setFilters({ state: "incident", type: "", process_instance: "" }));
  $("#drawer-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !dialogOpen) closeDrawer(); });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => { showTab(b.dataset.tab); refresh(); });
  }
  $("#pause").addEventListener("click", () => {
    view.paused = !view.paused;
    $("#pause").textContent = view.paused ? "Resume updates" : "Pause updates";
    refresh();
  });
  $("#forget-token").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showForgetToken(); refresh(); });
  showForgetToken();
  refresh().then(schedule);
}

init();
