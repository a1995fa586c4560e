// The inspector's page: hash routes (#/runs, #/flows, #/runs/<id>), data from /api, live
// updates from /api/events (server-sent events); every event re-reads what is shown.
const view = document.getElementById("view");
const notice = document.getElementById("notice");
const STATUSES = ["started", "completed", "failed", "cancelled"];
const SVG = "http://www.w3.org/2000/svg";

let live = "notify";
let events = null;

let render = null;

// The page's own token now rides in a cookie; keep it out of the address bar and screenshots.
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname + location.hash);
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  el.append(...children);
  return el;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "x-edgeflow-inspector": "1", ...(options.headers ?? {}) },
  });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

/** Replaces what the view shows; arrays are flattened and empty parts left out. */
function show(...children) {
  view.replaceChildren(
    ...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false),
  );
}

const badge = (status) => h("span", { class: `badge ${status}` }, status);

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function duration(from, to) {
  if (!from) return "";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)}m ${Math.round((ms % 60_000) / 1000)}s`;
}

function jsonDetails(label, value, key) {
  return h(
    "details",
    { "data-key": key },
    h("summary", {}, label),
    h("pre", {}, JSON.stringify(value, null, 2) ?? "null"),
  );
}

/** The DAG laid out by the server (dagre); `states` colours each step by its status. */
function dag(layout, states) {
  const svg = s("svg", {
    class: "dag",
    width: layout.width,
    height: layout.height,
    viewBox: `0 0 ${layout.width} ${layout.height}`,
  });
  svg.append(s(
    "defs",
    {},
    s("marker", {
      id: "arrow",
      viewBox: "0 0 10 10",
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: "auto-start-reverse",
    }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", style: "fill:#6b7385;stroke:none" })),
  ));
  for (const edge of layout.edges) {
    const d = edge.points.map((p, i) => `${i ? "L" : "M"} ${p.x} ${p.y}`).join(" ");
    svg.append(
      s("path", { d, "marker-end": "url(#arrow)", "data-edge": `${edge.from}->${edge.to}` }),
    );
  }
  for (const node of layout.nodes) {
    const status = states?.[node.step_slug];
    const x = node.x - node.width / 2;
    const y = node.y - node.height / 2;
    const group = s("g", {
      class: `node ${status ?? "plain"}`,
      "data-step": node.step_slug,
      "data-status": status ?? "",
      "data-type": node.step_type,
    });
    if (node.step_type === "map") {
      // A map step is drawn as a stack: one task per element.
      group.append(
        s("rect", {
          class: "map-shadow",
          x: x + 4,
          y: y - 4,
          width: node.width,
          height: node.height,
        }),
      );
    }
    group.append(s("rect", { class: "box", x, y, width: node.width, height: node.height }));
    const label = node.step_type === "map" ? `${node.step_slug} [map]` : node.step_slug;
    group.append(s("text", { x: node.x, y: node.y }, label));
    group.append(
      s("title", {}, `${node.step_slug} (${node.step_type})${status ? `: ${status}` : ""}`),
    );
    svg.append(group);
  }
  return svg;
}

/** Listens to runs' and flows' events; `onEvent` is debounced so a burst costs one re-read. */
function follow(runs, flows, onEvent) {
  const params = new URLSearchParams();
  for (const id of runs) params.append("run", id);
  for (const slug of flows) params.append("flow", slug);
  const key = params.toString();
  if (events?.key === key) {
    events.onEvent = onEvent;
    return;
  }
  events?.source.close();
  events = null;
  if (!key) return;
  const source = new EventSource(`/api/events?${key}`);
  let timer = null;
  events = { key, source, onEvent };
  const current = events;
  source.onmessage = () => {
    clearTimeout(timer);
    timer = setTimeout(() => current.onEvent(), 100);
  };
  // The server says "ready" once it listens (on every reconnect too): what changed between the
  // page's last read and then came with no event, so read again.
  source.addEventListener("ready", () => current.onEvent());
}

function stopFollowing() {
  events?.source.close();
  events = null;
}

// --- runs -----------------------------------------------------------------------------------

async function showRuns(params) {
  const [flows, page] = await Promise.all([api("/api/flows"), api(`/api/runs?${params}`)]);
  const flow = params.get("flow") ?? "";
  const status = params.get("status") ?? "";
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      if (value) next.set(key, value);
      else next.delete(key);
    }
    location.hash = `#/runs?${next}`;
  };
  const select = (name, options, value) =>
    h(
      "select",
      {
        name,
        "aria-label": name,
        onchange: (e) => go({ [name]: e.target.value, before: "", after: "" }),
      },
      h("option", { value: "" }, `all ${name === "flow" ? "flows" : "statuses"}`),
      options.map((option) => h("option", { value: option, selected: option === value }, option)),
    );
  const cursor = (c) => `${c.startedAt}~${c.runId}`;
  show(
    h("h2", {}, "Runs"),
    h(
      "div",
      { class: "filters" },
      select("flow", flows.map((f) => f.flow_slug), flow),
      select("status", STATUSES, status),
    ),
    page.runs.length === 0 ? h("p", { class: "muted" }, "No runs.") : h(
      "table",
      { id: "runs" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["run", "flow", "status", "started", "duration", "steps left"].map((t) => h("th", {}, t)),
        ),
      ),
      h(
        "tbody",
        {},
        page.runs.map((run) =>
          h(
            "tr",
            { "data-run": run.run_id },
            h("td", { class: "mono" }, h("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
            h("td", {}, run.flow_slug),
            h("td", {}, badge(run.status)),
            h("td", {}, when(run.started_at)),
            h("td", {}, duration(run.started_at, run.finished_at)),
            h("td", {}, run.remaining_steps),
          )
        ),
      ),
    ),
    h(
      "div",
      { class: "pager" },
      h("button", {
        disabled: !page.newer,
        onclick: () => go({ after: cursor(page.newer), before: "" }),
      }, "← Newer"),
      h("button", {
        disabled: !page.older,
        onclick: () => go({ before: cursor(page.older), after: "" }),
      }, "Older →"),
    ),
  );
  // New runs show up through their flows' queue notifications, finished ones through their own.
  const started = page.runs.filter((run) => run.status === "started").map((run) => run.run_id);
  follow(started, flow ? [flow] : flows.map((f) => f.flow_slug), () => refresh());
}

// --- flows ----------------------------------------------------------------------------------

async function showFlows() {
  const flows = await api("/api/flows");
  stopFollowing();
  show(
    h("h2", {}, "Flows"),
    flows.length === 0 ? h("p", { class: "muted" }, "No flows defined.") : null,
    flows.map((flow) =>
      h(
        "section",
        { class: "flow", "data-flow": flow.flow_slug },
        h("h3", {}, flow.flow_slug, " ", h("a", { href: `#/runs?flow=${flow.flow_slug}` }, "runs")),
        h(
          "p",
          { class: "muted" },
          `${flow.steps.length} step(s); `,
          `map steps: ${
            flow.steps.filter((st) => st.step_type === "map").map((st) => st.step_slug).join(
              ", ",
            ) || "none"
          }`,
        ),
        dag(flow.layout, null),
      )
    ),
  );
}

// --- one run --------------------------------------------------------------------------------

async function operate(runId, operation) {
  try {
    const run = await api(`/api/runs/${runId}/${operation}`, { method: "POST" });
    showNotice(`${operation}: run ${run.run_id} is ${run.status}`);
    if (run.run_id !== runId) location.hash = `#/runs/${run.run_id}`;
    else await refresh();
  } catch (error) {
    showNotice(`${operation} failed: ${error.message}`);
  }
}

function timeline(run, steps) {
  const start = new Date(run.started_at).getTime();
  const ends = steps.map((st) => st.completed_at ?? st.failed_at ?? st.cancelled_at).filter(
    Boolean,
  );
  const runEnd = run.completed_at ?? run.failed_at ?? run.cancelled_at;
  const end = Math.max(
    start + 1,
    runEnd ? new Date(runEnd).getTime() : Date.now(),
    ...ends.map((t) => new Date(t).getTime()),
  );
  const pct = (t) => `${(((t - start) / (end - start)) * 100).toFixed(2)}%`;
  return h(
    "div",
    { class: "timeline" },
    steps.map((step) => {
      const from = step.started_at ? new Date(step.started_at).getTime() : null;
      const finished = step.completed_at ?? step.failed_at ?? step.cancelled_at;
      const to = finished ? new Date(finished).getTime() : Date.now();
      return h(
        "div",
        { class: "row", "data-timeline-step": step.step_slug },
        h("span", { class: "mono" }, step.step_slug),
        h(
          "div",
          { class: "track" },
          from === null ? null : h("div", {
            class: `bar ${step.status}`,
            style: `left:${pct(from)};width:calc(${pct(Math.min(to, end))} - ${pct(from)})`,
            title: `${when(step.started_at)} – ${finished ? when(finished) : "running"}`,
          }),
        ),
        h(
          "span",
          { class: "muted" },
          from === null ? step.status : duration(step.started_at, finished),
        ),
      );
    }),
  );
}

async function showRun(runId) {
  const detail = await api(`/api/runs/${runId}`);
  const { run, steps, tasks } = detail;
  const open = new Set([...view.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  const finishedAt = run.completed_at ?? run.failed_at ?? run.cancelled_at;
  const errors = steps.filter((st) => st.error_message);
  const states = Object.fromEntries(steps.map((st) => [st.step_slug, st.status]));
  show(
    h(
      "div",
      { class: "run-head" },
      h("h2", {}, "Run ", h("span", { class: "mono" }, run.run_id)),
      h("span", { id: "run-status", "data-run-status": run.status }, badge(run.status)),
      h("span", {}, "flow ", h("a", { href: `#/runs?flow=${run.flow_slug}` }, run.flow_slug)),
      h(
        "span",
        { class: "muted" },
        `started ${when(run.started_at)}`,
        finishedAt ? `, took ${duration(run.started_at, finishedAt)}` : "",
      ),
      run.restart_of_run_id
        ? h(
          "span",
          {},
          "restart of ",
          h("a", { href: `#/runs/${run.restart_of_run_id}` }, run.restart_of_run_id.slice(0, 8)),
        )
        : null,
    ),
    h(
      "div",
      { class: "actions" },
      h("button", {
        id: "cancel",
        disabled: run.status !== "started",
        onclick: () => operate(run.run_id, "cancel"),
      }, "Cancel"),
      h("button", {
        id: "resume",
        disabled: !["failed", "cancelled"].includes(run.status),
        onclick: () => operate(run.run_id, "resume"),
      }, "Resume"),
      h("button", {
        id: "restart",
        disabled: run.status === "started",
        onclick: () => operate(run.run_id, "restart"),
      }, "Restart"),
    ),
    errors.length
      ? h(
        "div",
        { id: "errors" },
        errors.map((st) =>
          h(
            "p",
            { class: "error", "data-error-step": st.step_slug },
            `${st.step_slug}: ${st.error_message}`,
          )
        ),
      )
      : null,
    h("h3", {}, "Steps"),
    dag(detail.layout, states),
    h("h3", {}, "Timeline"),
    timeline(run, steps),
    h("h3", {}, "Tasks"),
    h(
      "table",
      { id: "tasks" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["step", "task", "status", "attempts", "duration", "input / output / error"].map((t) =>
            h("th", {}, t)
          ),
        ),
      ),
      h(
        "tbody",
        {},
        tasks.map((task) => {
          const key = `${task.step_slug}/${task.task_index}`;
          return h(
            "tr",
            { "data-task": key, "data-status": task.status },
            h("td", { class: "mono" }, task.step_slug),
            h("td", {}, task.task_index),
            h("td", {}, badge(task.status)),
            h("td", {}, task.attempts_count),
            h(
              "td",
              {},
              duration(task.started_at, task.completed_at ?? task.failed_at ?? task.cancelled_at),
            ),
            h(
              "td",
              {},
              task.error_message
                ? h("div", { class: "error", "data-task-error": key }, task.error_message)
                : null,
              jsonDetails("input", task.input, `${key}/input`),
              task.output !== null ? jsonDetails("output", task.output, `${key}/output`) : null,
            ),
          );
        }),
      ),
    ),
    h("h3", {}, "Run input and output"),
    jsonDetails("input", run.input, "run/input"),
    run.output !== null ? jsonDetails("output", run.output, "run/output") : null,
  );
  for (const details of view.querySelectorAll("details")) {
    if (open.has(details.dataset.key)) details.open = true;
  }
  follow([run.run_id], [], () => refresh());
}

// --- routing --------------------------------------------------------------------------------

function route() {
  const hash = location.hash.slice(1) || "/runs";
  const [path, query = ""] = hash.split("?");
  const runMatch = /^\/runs\/([^/]+)$/.exec(path);
  if (runMatch) return () => showRun(decodeURIComponent(runMatch[1]));
  if (path === "/flows") return () => showFlows();
  return () => showRuns(new URLSearchParams(query));
}

let rendering = Promise.resolve();
let failedToLoad = false;
function refresh() {
  const current = render;
  rendering = rendering.then(() => current?.()).then(
    () => {
      // A later success clears a load error, not an operation's message.
      if (failedToLoad) showNotice("");
      failedToLoad = false;
    },
    (error) => {
      failedToLoad = true;
      showNotice(error.message);
    },
  );
  return rendering;
}

globalThis.addEventListener("hashchange", () => {
  showNotice("");
  render = route();
  refresh();
});

document.getElementById("find-run").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = new FormData(event.target).get("id").trim();
  if (id) location.hash = `#/runs/${encodeURIComponent(id)}`;
});

api("/api/info").then((info) => {
  live = info.live;
  // Where the core's events go to Supabase Realtime, no notification reaches this server.
  if (live === "polling") setInterval(refresh, 3000);
}, () => {});

render = route();
refresh();
