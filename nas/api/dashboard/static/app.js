"use strict";
// The dashboard: two views (#/ the searches, #/searches/ID one search) over the /v1 API,
// with a token kept for this tab. Pages poll while something runs; a search and its
// leaderboard are revalidated (If-None-Match), so polling an unchanged one costs a 304.

const POLL_MS = 3000;
const PAGE_SIZE = 100; // leaderboard rows drawn at once
const LIST_PAGE = 100; // searches fetched at once (the API's most)
const CURVES = 10; // best trials drawn as learning curves, besides every running one
const TOKEN_KEY = "nas-token";
const LIVE = new Set(["queued", "running"]);
const FORMATS = { savedmodel: "SavedModel (.tar.gz)", keras: ".keras file" };

const view = document.getElementById("view");
let generation = 0; // bumped on every navigation: stale polls stop
let timer = null;
let charts = [];
const copies = new Map(); // path -> { etag, body }: the last answer of each revalidated path

Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;

class Unauthorized extends Error {}

// DOM ----------------------------------------------------------------------------------

/** An element; props starting with "on" are listeners, the rest properties. Children are
 * nodes or text (never parsed as HTML: the data comes from users). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const fmtScore = (value) => (value === null || value === undefined ? "–" : value.toFixed(4));
const fmtInt = (value) => (value === null || value === undefined ? "–" : value.toLocaleString());
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const badge = (status) => el("span", { className: `status ${status}` }, status);

function notice(message) {
  const box = document.getElementById("notice");
  box.textContent = message || "";
  box.hidden = !message;
}

// Token and API ------------------------------------------------------------------------

function askToken(message) {
  document.getElementById("token-error").textContent = message || "";
  const dialog = document.getElementById("token-dialog");
  if (!dialog.open) dialog.showModal();
}

document.getElementById("token-form").addEventListener("submit", () => {
  const input = document.getElementById("token-input");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  route();
});
document.getElementById("change-token").addEventListener("click", () => askToken());

/** fetch() with the bearer token; a 401 asks for another token, other errors throw (a 304
 * is the caller's to handle). The browser's HTTP cache stays out of it: revalidation is
 * done here, where the page can tell an unchanged answer from a new one. */
async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    askToken();
    throw new Unauthorized();
  }
  const response = await fetch(path, {
    cache: "no-store",
    ...options,
    headers: { ...options.headers, Authorization: `Bearer ${token}` },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken("That token was refused: enter another.");
    throw new Unauthorized();
  }
  if (!response.ok && response.status !== 304) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${response.status}: ${body.detail || response.statusText}`);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();

/** GET JSON, revalidated: sends the ETag of the last copy and reuses it on a 304; returns
 * { etag, body }, the same object while nothing changed. */
async function getRevalidated(path) {
  const copy = copies.get(path);
  const response = await api(path, copy ? { headers: { "If-None-Match": copy.etag } } : {});
  if (response.status === 304 && copy) return copy;
  const fresh = { etag: response.headers.get("etag"), body: await response.json() };
  if (fresh.etag) copies.set(path, fresh);
  return fresh;
}

/** Save an authenticated download: links cannot carry the token, so fetch it as a blob. */
async function download(path, fallbackName) {
  const response = await api(path);
  const disposition = response.headers.get("content-disposition") || "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || fallbackName;
  const url = URL.createObjectURL(await response.blob());
  el("a", { href: url, download: name }).click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function button(label, action, className = "") {
  return el("button", {
    type: "button",
    className,
    onclick: (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      Promise.resolve(action())
        .catch(report)
        .finally(() => (target.disabled = false));
    },
  }, label);
}

function report(error) {
  if (!(error instanceof Unauthorized)) notice(error.message);
}

// Navigation and polling ---------------------------------------------------------------

function route() {
  const current = ++generation;
  clearTimeout(timer);
  charts.forEach((chart) => chart.destroy());
  charts = [];
  notice("");
  const match = /^#\/searches\/([0-9a-f]{32})$/.exec(location.hash);
  (match ? searchPage(current, match[1]) : listPage(current)).catch(report);
}

/** Run ``refresh`` now and again every POLL_MS while it answers true and the page is
 * still shown; returns a function that refreshes at once. */
function poll(current, refresh) {
  const tick = async () => {
    clearTimeout(timer);
    let again = true;
    try {
      again = await refresh();
      if (current === generation) notice("");
    } catch (error) {
      if (current !== generation) return;
      if (error instanceof Unauthorized) return;
      report(error);
    }
    if (again && current === generation) {
      clearTimeout(timer); // a refresh on demand may have overlapped this one
      timer = setTimeout(tick, POLL_MS);
    }
  };
  tick();
  return tick;
}

// The searches -------------------------------------------------------------------------

async function listPage(current) {
  const rows = el("tbody");
  const total = el("p", { className: "muted" });
  view.replaceChildren(
    el("h1", {}, "Searches"),
    el("table", { className: "searches" },
      el("thead", {}, el("tr", {}, ...["Search", "Dataset", "Owner", "Status", "Progress",
        "Best score", "Created"].map((name) => el("th", {}, name)))),
      rows),
    total,
  );
  let pages = 1; // pages of LIST_PAGE searches shown: "Older searches" adds one
  const older = button("Older searches", () => {
    pages += 1;
    return refresh();
  });
  total.after(older);
  const refresh = poll(current, async () => {
    const items = [];
    let page = { next_cursor: null };
    for (let shown = 0; shown < pages && (shown === 0 || page.next_cursor); shown++) {
      const after = page.next_cursor ? `&cursor=${encodeURIComponent(page.next_cursor)}` : "";
      page = await getJSON(`v1/searches?limit=${LIST_PAGE}${after}`);
      items.push(...page.items);
    }
    rows.replaceChildren(...items.map(searchRow));
    total.textContent = `${items.length} of ${page.total} searches, newest first.`;
    older.hidden = !page.next_cursor;
    return items.some((search) => LIVE.has(search.status));
  });
}

function searchRow(search) {
  return el("tr", { "data-search": search.id },
    el("td", {}, el("a", { href: `#/searches/${search.id}` }, search.id.slice(0, 12))),
    el("td", { title: datasetSource(search.spec.dataset) }, datasetName(search.spec.dataset)),
    el("td", {}, search.owner),
    el("td", {}, badge(search.status)),
    el("td", {}, progress(search)),
    el("td", {}, fmtScore(search.best_trial?.score)),
    el("td", {}, fmtTime(search.created_at)),
  );
}

/** Where a search's photos come from: its folder, its TFRecord glob, or "tf_flowers". */
const datasetSource = (dataset) => dataset.path ?? dataset.tfrecords ?? dataset.name;

/** A dataset's short name: the last part of its source ("flowers", "train-*.tfrec"). */
const datasetName = (dataset) =>
  datasetSource(dataset).split("/").filter(Boolean).pop() ?? datasetSource(dataset);

function progress(search) {
  return el("span", { className: "progress" },
    el("progress", { max: search.trials_planned, value: search.trials_done }),
    ` ${search.trials_done} / ${search.trials_planned}`);
}

// One search ---------------------------------------------------------------------------

async function searchPage(current, id) {
  const base = `v1/searches/${id}`;
  const head = el("section", { className: "head" });
  const board = leaderboardTable();
  const models = el("section", { className: "models" }, el("h2", {}, "Best model"),
    el("p", { className: "muted" }, "Models are exported when the search ends."));
  const canvases = ["val_accuracy", "val_loss", "scatter"].map((name) =>
    el("canvas", { id: `chart-${name}` }));
  view.replaceChildren(
    head,
    el("section", { className: "charts" }, ...canvases.map((canvas) =>
      el("figure", {}, el("div", { className: "chart" }, canvas)))),
    el("section", {},
      el("h2", {}, "Leaderboard ",
        button("Download JSON", () => download(`${base}/leaderboard`, `${id}-leaderboard.json`)),
        button("Download CSV", () => download(`${base}/leaderboard.csv`, `${id}-leaderboard.csv`))),
      board.node),
    models,
  );
  const accuracy = curveChart(canvases[0], "val_accuracy", "Validation accuracy per epoch");
  const loss = curveChart(canvases[1], "val_loss", "Validation loss per epoch");
  const scatter = scatterChart(canvases[2]);
  let modelsShown = false;

  let drawn = [null, null]; // the answers on screen: redrawn only when one is new

  const refresh = poll(current, async () => {
    const answers = await Promise.all([getRevalidated(base), getRevalidated(`${base}/leaderboard`)]);
    const [search, leaderboard] = answers.map((answer) => answer.body);
    if (answers.some((answer, i) => answer !== drawn[i])) {
      drawn = answers;
      head.replaceChildren(...searchHead(search, refresh));
      board.update(leaderboard.trials);
      const trials = leaderboard.trials;
      drawCurves(accuracy, trials, "val_accuracy");
      drawCurves(loss, trials, "val_loss");
      drawScatter(scatter, trials, leaderboard.objective);
    }
    if (!LIVE.has(search.status) && !modelsShown) {
      modelsShown = true;
      await showModels(base, models);
    }
    return LIVE.has(search.status);
  });
}

function searchHead(search, refresh) {
  const live = LIVE.has(search.status);
  const cancel = live && !search.cancel_requested
    ? button("Cancel search", async () => {
      if (!confirm("Cancel this search? Running trials stop at the end of their epoch.")) return;
      await api(`v1/searches/${search.id}/cancel`, { method: "POST" });
      await refresh();
    }, "danger")
    : null;
  const dataset = search.spec.dataset;
  return [
    el("h1", {}, `Search ${search.id.slice(0, 12)} `, badge(search.status),
      search.cancel_requested && live ? el("span", { className: "muted" }, " cancelling…") : null,
      cancel),
    el("p", {}, progress(search), " trials · best ", el("strong", { id: "best-score" },
      fmtScore(search.best_trial?.score)), ` ${search.spec.objective}`),
    el("p", { className: "muted" },
      `${datasetSource(dataset)} at ${dataset.image_size} px · ${search.spec.tuner.algorithm} `
      + `tuner · ${search.spec.tuner.epochs} epochs per trial · owner ${search.owner} · `
      + `created ${fmtTime(search.created_at)}`
      + (search.accelerator ? ` · ${search.accelerator.strategy}` : "")
      + (search.precision ? ` · ${search.precision}` : "")),
    spentLine(search),
    search.error ? el("pre", { className: "error" }, search.error) : null,
  ].filter(Boolean);
}

/** The search's budget, and once it ended what it spent and which limit ended it. */
function spentLine(search) {
  const budget = search.spec.budget ? `budget ${search.spec.budget.seconds} s` : "no budget";
  if (search.ended_by === null || search.ended_by === undefined) {
    return el("p", { className: "muted", id: "spent" }, budget);
  }
  return el("p", { className: "muted", id: "spent" },
    `${budget} · ${(search.wall_seconds ?? 0).toFixed(1)} s wall, `
    + `${(search.training_seconds ?? 0).toFixed(1)} s of training in total · `
    + `ended by ${search.ended_by}`);
}

// The leaderboard table: sorted and paged in the browser; only one page is drawn.

function leaderboardTable() {
  const state = { trials: [], key: "rank", ascending: true, page: 0 };
  const table = el("table", { className: "board" });
  const pager = el("div", { className: "pager" });

  const columns = () => {
    const names = new Set();
    state.trials.forEach((trial) => Object.keys(trial.hyperparameters).forEach((n) => names.add(n)));
    return [
      { key: "rank", label: "Rank", value: (t) => t.rank },
      { key: "trial_id", label: "Trial", value: (t) => t.trial_id },
      { key: "status", label: "Status", value: (t) => t.status, show: badge },
      { key: "score", label: "Score", value: (t) => t.score, show: fmtScore },
      { key: "test_accuracy", label: "Test accuracy", value: (t) => t.test_accuracy,
        show: fmtScore },
      { key: "final_epochs", label: "Final epochs", value: (t) => t.final_epochs },
      { key: "params", label: "Params", value: (t) => t.params, show: fmtInt },
      { key: "epochs", label: "Epochs", value: (t) => t.epochs },
      { key: "seconds", label: "Seconds", value: (t) => t.seconds, show: (v) => v.toFixed(1) },
      { key: "stop_reason", label: "Stopped early", value: (t) => t.stop_reason },
      { key: "hostname", label: "Host", value: (t) => t.hostname },
      { key: "worker_id", label: "Worker", value: (t) => t.worker_id },
      { key: "accelerator", label: "Accelerator", value: (t) => deviceName(t.accelerator) },
      ...[...names].sort().map((name) => ({
        key: `hp:${name}`, label: name, value: (t) => t.hyperparameters[name] })),
    ];
  };

  /** "GPU x2 (mirrored)" from a trial's accelerator record; null before it ran anywhere. */
  function deviceName(accelerator) {
    if (!accelerator) return null;
    const replicas = accelerator.replicas > 1 ? ` x${accelerator.replicas}` : "";
    return `${accelerator.platform}${replicas} (${accelerator.strategy})`;
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1; // missing values last, either way
    if (b === null || b === undefined) return -1;
    const order = typeof a === "number" && typeof b === "number"
      ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
    return state.ascending ? order : -order;
  }

  function cell(column, trial) {
    const value = column.value(trial);
    return value === null || value === undefined ? "–" : (column.show || String)(value);
  }

  function render() {
    const cols = columns();
    const column = cols.find((c) => c.key === state.key) || cols[0];
    const sorted = [...state.trials].sort((a, b) => compare(column.value(a), column.value(b)));
    const pages = Math.max(1, Math.ceil(sorted.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const shown = sorted.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    table.replaceChildren(
      el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {
        "aria-sort": c.key === column.key ? (state.ascending ? "ascending" : "descending") : "none",
        onclick: () => {
          state.ascending = c.key === state.key ? !state.ascending : true;
          state.key = c.key;
          state.page = 0;
          render();
        },
      }, c.label)))),
      el("tbody", {}, ...shown.map((trial) => el("tr", { "data-trial": trial.trial_id },
        ...cols.map((c) => el("td", {}, cell(c, trial)))))),
    );
    const turn = (delta) => () => {
      state.page += delta;
      render();
    };
    pager.replaceChildren(...(pages < 2 ? [] : [
      el("button", { type: "button", disabled: state.page === 0, onclick: turn(-1) }, "‹ Previous"),
      el("span", { className: "page" }, ` Page ${state.page + 1} of ${pages} `
        + `(${sorted.length} trials) `),
      el("button", { type: "button", disabled: state.page === pages - 1, onclick: turn(1) },
        "Next ›"),
    ]));
  }

  return {
    node: el("div", {}, table, pager),
    update(trials) {
      state.trials = trials;
      render();
    },
  };
}

// Charts -------------------------------------------------------------------------------

function curveChart(canvas, metric, title) {
  const chart = new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      parsing: false,
      scales: {
        x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } },
        y: { title: { display: true, text: metric } },
      },
      plugins: { title: { display: true, text: title }, legend: { position: "bottom" } },
    },
  });
  charts.push(chart);
  return chart;
}

/** The first CURVES trials of the leaderboard that have epochs (the best ones, then any
 * unranked ones) and every running one, each as a line over its epochs; running ones dashed. */
function drawCurves(chart, trials, metric) {
  const best = trials.filter((t) => t.history.length).slice(0, CURVES);
  const running = trials.filter((t) => t.status === "running" && !best.includes(t));
  chart.data.datasets = [...best, ...running].map((trial) => ({
    label: `trial ${trial.trial_id}`,
    data: trial.history.map((epoch, index) => ({ x: index + 1, y: epoch[metric] ?? null })),
    borderDash: trial.status === "running" ? [5, 4] : [],
    pointRadius: 2,
  }));
  chart.update();
}

function scatterChart(canvas) {
  const chart = new Chart(canvas, {
    type: "scatter",
    data: { datasets: [] },
    options: {
      parsing: false,
      scales: {
        x: { type: "logarithmic", title: { display: true, text: "parameters" } },
        y: { title: { display: true, text: "score" } },
      },
      plugins: {
        title: { display: true, text: "Score against model size" },
        legend: { position: "bottom" },
        tooltip: {
          callbacks: {
            label: (item) => `trial ${item.raw.trial}: ${fmtScore(item.raw.y)}, `
              + `${fmtInt(item.raw.x)} params`,
          },
        },
      },
    },
  });
  charts.push(chart);
  return chart;
}

function drawScatter(chart, trials, objective) {
  const points = (status) => trials
    .filter((t) => t.status === status && t.score !== null && t.params)
    .map((t) => ({ x: t.params, y: t.score, trial: t.trial_id }));
  chart.options.scales.y.title.text = objective;
  chart.data.datasets = [
    { label: "completed", data: points("completed"), pointRadius: 4 },
    { label: "running", data: points("running"), pointRadius: 4 },
  ];
  chart.update();
}

// Exported models ----------------------------------------------------------------------

async function showModels(base, box) {
  const { models } = await getJSON(`${base}/models`);
  const list = el("ul", {}, ...models.map((model) => el("li", { "data-rank": model.rank },
    `#${model.rank}: trial ${model.trial_id}, score ${fmtScore(model.score)}, `
    + (model.test_accuracy === null ? "" : `test accuracy ${fmtScore(model.test_accuracy)}, `)
    + `${fmtInt(model.params)} params `,
    ...model.formats.map((format) => button(`Download ${FORMATS[format] || format}`,
      () => download(`${base}/models/${model.rank}/${format}`, `rank${model.rank}.${format}`),
      `download-${format}`)))));
  const summary = models.length
    ? el("pre", { id: "summary" }, await (await api(`${base}/models/1/summary`)).text())
    : el("p", { className: "muted" }, "No model was exported.");
  box.replaceChildren(el("h2", {}, "Best model"), list, summary);
}

window.addEventListener("hashchange", route);
route();
