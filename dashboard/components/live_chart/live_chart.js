// StackLab's live charts (a Streamlit components-v2 module): Plotly charts kept in the page.
//
// Each update is a delta from dashboard/live_chart.py: the points not drawn yet, appended
// with Plotly.extendTraces; phase markers with relayout. An update that does not follow the
// one drawn (the component was remounted, or an update was missed) makes the component ask
// for the whole history ("resync" trigger); the next update is then a reset.
//
// Each series is two traces: the raw values (index i) and their exponential moving average
// (index n + i), shown while smoothing > 0 with the raw curve faint behind it. The raw
// trace's customdata holds the other x (wall time while x is the epoch, and back), so
// switching the x axis swaps two arrays Plotly already holds: nothing is kept twice.
//
// plotly.js is the installed plotly package's own file, served by Streamlit beside this
// module (dashboard/components/live_chart/__init__.py); it is loaded once per page.
//
// Following a run (data.follow, when the dashboard serves dashboard/live_api.py's route): the
// component fetches {payload, cursor, status} from the route every interval_ms by itself and
// shows the progress line above the charts; nothing reruns in Streamlit while a run trains.
// A change of the run's status (it started, is stopping, ended) sets the "status" trigger:
// one rerun of the page, whose widgets (the Stop and Train buttons) then catch up.

const PLOTLY_URL = new URL("../stacklab.plotly/plotly.min.js", import.meta.url).href;
const MARKER_COLOR = "#7f7f7f";
const CHART_HEIGHT = 300;
const MARKERS_UP_TO = 60; // points per series drawn with markers; beyond, lines only
// Axes inside fixed margins (see layout): no label measuring on each redraw.
const FIXED_AXIS = { automargin: false, ticklabeloverflow: "allow" };
const views = new WeakMap(); // parentElement -> the component's state

let plotlyLoading = null;

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = PLOTLY_URL;
      script.dataset.stacklabPlotly = "";
      script.addEventListener("load", () => resolve(window.Plotly));
      script.addEventListener("error", () => {
        plotlyLoading = null;
        reject(new Error(`plotly.js could not be loaded from ${PLOTLY_URL}`));
      });
      document.head.appendChild(script);
    });
  }
  return plotlyLoading;
}

// TensorBoard's smoothing: an exponential moving average, debiased so it starts at the data.
function smoothStep(state, y, weight) {
  state.last = state.last * weight + (1 - weight) * y;
  state.count += 1;
  const debias = weight === 1 ? 1 : 1 - Math.pow(weight, state.count);
  return state.last / debias;
}

function smoothAll(values, weight) {
  const state = { last: 0, count: 0 };
  const out = values.map((y) => (Number.isFinite(y) ? smoothStep(state, y, weight) : y));
  return { out, state };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function createView(parentElement) {
  const root = el("div", "slc-root");
  const toolbar = el("div", "slc-toolbar");
  const smoothingLabel = el("label", "slc-control");
  smoothingLabel.append("Smoothing ");
  const smoothing = el("input", "slc-smoothing");
  Object.assign(smoothing, { type: "range", min: "0", max: "0.99", step: "0.01", value: "0" });
  smoothing.setAttribute("aria-label", "Smoothing");
  const smoothingValue = el("span", "slc-smoothing-value", "0.00");
  smoothingLabel.append(smoothing, smoothingValue);
  const logLabel = el("label", "slc-control");
  const logY = el("input", "slc-log");
  logY.type = "checkbox";
  logLabel.append(logY, " Log scale");
  const xLabel = el("label", "slc-control");
  xLabel.append("X axis ");
  const xMode = el("select", "slc-x");
  for (const [value, text] of [["epoch", "epoch"], ["time", "wall time"]]) {
    const option = el("option", "", text);
    option.value = value;
    xMode.append(option);
  }
  xLabel.append(xMode);
  toolbar.append(smoothingLabel, logLabel, xLabel);
  const status = el("div", "slc-status");
  status.hidden = true;
  const bar = el("div", "slc-bar");
  const barFill = el("div", "slc-bar-fill");
  bar.append(barFill);
  const statusText = el("div", "slc-status-text");
  const statusNote = el("div", "slc-status-note");
  status.append(statusText, bar, statusNote);
  const grid = el("div", "slc-grid");
  const message = el("div", "slc-message");
  root.append(status, toolbar, grid, message);
  parentElement.append(root);

  const view = {
    root, grid, message, status: { box: status, text: statusText, bar, fill: barFill, note: statusNote },
    follow: null, stream: null, seq: 0, asked: null, charts: new Map(), markers: [],
    settings: { smoothing: 0, logY: false, x: "epoch" }, queue: Promise.resolve(), setTriggerValue: null,
    resizer: new ResizeObserver((entries) => {
      for (const entry of entries) {
        if (window.Plotly && entry.target._fullLayout) window.Plotly.Plots.resize(entry.target);
      }
    }),
  };
  let pending = false;
  smoothing.addEventListener("input", () => {
    view.settings.smoothing = Number(smoothing.value);
    smoothingValue.textContent = view.settings.smoothing.toFixed(2);
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const started = performance.now();
      view.charts.forEach((chart) => resmooth(chart, view.settings));
      view.root.dataset.smoothMs = (performance.now() - started).toFixed(1); // for tests and benchmarks
    });
  });
  logY.addEventListener("change", () => {
    view.settings.logY = logY.checked;
    view.charts.forEach((chart) => window.Plotly.relayout(chart.gd, { "yaxis.type": logY.checked ? "log" : "linear" }));
  });
  xMode.addEventListener("change", () => {
    view.settings.x = xMode.value;
    view.charts.forEach((chart) => swapX(chart, view));
  });
  return view;
}

function rawStyle(series, smoothing) {
  const faint = smoothing > 0;
  if (series.kind === "step") return { opacity: faint ? 0.2 : 0.45, "line.width": 1 };
  return { opacity: faint ? 0.3 : 1, "line.width": 2 };
}

// The chart's traces with the points it starts from (a reset draws once, not per update).
function traces(chart, state, points, settings) {
  const shownX = (p) => (settings.x === "time" ? p.t : p.x);
  const otherX = (p) => (settings.x === "time" ? p.x : p.t);
  const empty = { x: [], t: [], y: [] };
  const raw = chart.series.map((series) => {
    const p = points[series.id] || empty;
    if (series.kind !== "step" && p.x.length) state.lastEpoch = Math.max(state.lastEpoch, ...p.x);
    const crowded = series.kind === "step" || p.x.length > MARKERS_UP_TO;
    return {
      type: "scatter",
      mode: crowded ? "lines" : "lines+markers",
      name: series.name,
      legendgroup: series.id,
      x: shownX(p).slice(), y: p.y.slice(), customdata: otherX(p).slice(),
      line: { color: series.color, width: series.kind === "step" ? 1 : 2 },
      marker: { size: 6 },
      opacity: rawStyle(series, settings.smoothing).opacity,
      zorder: series.kind === "step" ? -1 : 0, // the step samples under the epoch points
      hovertemplate: "%{y:.4g}",
    };
  });
  const smooth = chart.series.map((series, i) => {
    const p = points[series.id] || empty;
    const { out, state: ema } = smoothAll(p.y, settings.smoothing);
    state.smooth[i] = ema;
    return {
      type: "scatter", mode: "lines", name: `${series.name} (smoothed)`, legendgroup: series.id, showlegend: false,
      x: shownX(p).slice(), y: out, customdata: otherX(p).slice(), line: { color: series.color, width: series.kind === "step" ? 1.5 : 2.5 },
      visible: settings.smoothing > 0, zorder: series.kind === "step" ? -1 : 0, hovertemplate: "%{y:.4g}",
    };
  });
  return raw.concat(smooth);
}

function markerLayout(markers, xMode) {
  return {
    shapes: markers.map((m) => ({
      type: "line", xref: "x", yref: "paper", y0: 0, y1: 1, x0: xMode === "time" ? m.t : m.x,
      x1: xMode === "time" ? m.t : m.x, line: { dash: "dot", color: MARKER_COLOR, width: 1.5 },
    })),
    annotations: markers.map((m) => ({
      xref: "x", yref: "paper", x: xMode === "time" ? m.t : m.x, y: 1, xanchor: "right", yanchor: "top",
      text: m.text, showarrow: false, font: { color: MARKER_COLOR },
    })),
  };
}

function xAxisLayout(xMode, lastEpoch) {
  if (xMode === "time") return { title: { text: "wall time (s)" }, tickformat: "", dtick: null, ...FIXED_AXIS };
  return { title: { text: "epoch" }, tickformat: "d", dtick: lastEpoch <= 12 ? 1 : null, ...FIXED_AXIS };
}

function layout(spec, view) {
  const style = getComputedStyle(view.root);
  const font = style.getPropertyValue("--st-font").trim() || "sans-serif";
  const color = style.getPropertyValue("--st-text-color").trim() || "#31333f";
  const subtitle = spec.subtitle ? ` <sup>${spec.subtitle}</sup>` : "";
  // A few lines: the legend in a row above the plot; many (runs): a column beside it, scrolling.
  const many = spec.series.length > 4;
  const legend = many ? { orientation: "v", yanchor: "top", y: 1, xanchor: "left", x: 1.02 }
    : { orientation: "h", yanchor: "bottom", y: 1.0, xanchor: "right", x: 1 };
  return {
    title: { text: `${spec.title}${subtitle}`, x: 0, xanchor: "left" },
    height: spec.height || CHART_HEIGHT,
    // Fixed margins, no automargin: Plotly then measures no label boxes on a redraw (each
    // extendTraces redraws the chart). Measured in Chromium's profiler while a run trains:
    // the redraws' time 1.0 -> 0.67 s in 10 s, forced layouts 453 -> 145.
    margin: { l: 64, r: 10, t: 60, b: 48 },
    font: { family: font, color },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    legend,
    hovermode: "x unified",
    xaxis: { ...xAxisLayout(view.settings.x, 0), gridcolor: "rgba(128,128,128,0.2)", zeroline: false },
    yaxis: {
      title: { text: spec.y_title }, ...FIXED_AXIS, type: view.settings.logY ? "log" : "linear",
      rangemode: spec.y_from_zero ? "tozero" : "normal", gridcolor: "rgba(128,128,128,0.2)", zeroline: false,
    },
    ...markerLayout(view.markers, view.settings.x),
  };
}

function clear(view) {
  view.charts.forEach((chart) => {
    view.resizer.unobserve(chart.gd);
    window.Plotly.purge(chart.gd);
  });
  view.charts.clear();
  view.grid.replaceChildren();
}

function fileName(view, chartId) {
  return `stacklab-${String(view.stream).replace(/[^A-Za-z0-9_-]+/g, "-")}-${chartId}`;
}

function card(view, spec) {
  const box = el("div", "slc-card");
  box.dataset.chart = spec.id;
  const png = el("button", "slc-png", "PNG");
  png.type = "button";
  png.title = "Download this chart as a PNG image";
  const gd = el("div", "slc-plot");
  box.append(png, gd);
  png.addEventListener("click", () => window.Plotly.downloadImage(gd, {
    format: "png", filename: fileName(view, spec.id), width: gd.offsetWidth || 700, height: spec.height || CHART_HEIGHT,
  }));
  return { box, gd };
}

// A reset: the same charts are redrawn in place (Plotly.react, no flash, the page keeps its
// height); other charts replace them. Every card is in the grid before any is plotted, so
// each is plotted at its final width.
async function build(view, payload) {
  const Plotly = await loadPlotly();
  const specs = payload.charts || [];
  const same = specs.length === view.charts.size
    && specs.every((spec) => view.charts.get(spec.id)?.specJson === JSON.stringify(spec));
  if (!same) {
    clear(view);
    for (const spec of specs) {
      const { box, gd } = card(view, spec);
      view.grid.append(box);
      view.charts.set(spec.id, { spec, specJson: JSON.stringify(spec), gd, lastEpoch: 0, smooth: [], plotted: false });
    }
  }
  view.markers = payload.markers || [];
  for (const spec of specs) {
    const chart = view.charts.get(spec.id);
    chart.lastEpoch = 0;
    const data = traces(spec, chart, payload.points || {}, view.settings);
    const chartLayout = layout(spec, view);
    if (view.settings.x === "epoch") chartLayout.xaxis.dtick = chart.lastEpoch <= 12 ? 1 : null;
    await (chart.plotted ? Plotly.react : Plotly.newPlot)(chart.gd, data, chartLayout, { displayModeBar: false });
    if (!chart.plotted) view.resizer.observe(chart.gd);
    chart.plotted = true;
  }
}

// One extendTraces for the raw and the smoothed traces together: one redraw per update.
function extend(chart, points, view) {
  const { series } = chart.spec;
  const n = series.length;
  const update = { x: [], y: [], customdata: [] };
  const raw = [];
  const smooth = { x: [], y: [], customdata: [] };
  const smoothIndices = [];
  series.forEach((s, i) => {
    const p = points[s.id];
    if (!p || !p.y.length) return;
    const [shown, other] = view.settings.x === "time" ? [p.t, p.x] : [p.x, p.t];
    raw.push(i);
    update.x.push(shown);
    update.y.push(p.y);
    update.customdata.push(other);
    smoothIndices.push(n + i);
    smooth.x.push(shown);
    smooth.customdata.push(other);
    const weight = view.settings.smoothing;
    smooth.y.push(p.y.map((y) => (Number.isFinite(y) ? smoothStep(chart.smooth[i], y, weight) : y)));
    if (s.kind !== "step") chart.lastEpoch = Math.max(chart.lastEpoch, ...p.x);
  });
  if (!raw.length) return;
  window.Plotly.extendTraces(chart.gd, {
    x: update.x.concat(smooth.x), y: update.y.concat(smooth.y), customdata: update.customdata.concat(smooth.customdata),
  }, raw.concat(smoothIndices));
  // Many epochs: lines only, markers would hide the curve.
  const crowded = raw.filter((i) => series[i].kind !== "step" && chart.gd.data[i].x.length > MARKERS_UP_TO
    && chart.gd.data[i].mode !== "lines");
  if (crowded.length) window.Plotly.restyle(chart.gd, { mode: "lines" }, crowded);
  const dtick = view.settings.x === "epoch" && chart.lastEpoch <= 12 ? 1 : null;
  if (view.settings.x === "epoch" && chart.gd.layout.xaxis.dtick !== dtick) {
    window.Plotly.relayout(chart.gd, { "xaxis.dtick": dtick });
  }
}

// Two redraws whatever the number of series: the smoothed curves, then the raw ones' style.
function resmooth(chart, settings) {
  const { series } = chart.spec;
  const n = series.length;
  const ys = series.map((s, i) => {
    const { out, state } = smoothAll(chart.gd.data[i].y, settings.smoothing);
    chart.smooth[i] = state;
    return out;
  });
  window.Plotly.restyle(chart.gd, { y: ys, visible: settings.smoothing > 0 }, series.map((_, i) => n + i));
  const styles = series.map((s) => rawStyle(s, settings.smoothing));
  window.Plotly.restyle(chart.gd, {
    opacity: styles.map((style) => style.opacity), "line.width": styles.map((style) => style["line.width"]),
  }, series.map((_, i) => i));
}

function swapX(chart, view) {
  const { series } = chart.spec;
  const n = series.length;
  const raw = series.map((_, i) => chart.gd.data[i]);
  const xs = raw.map((trace) => trace.customdata);
  const others = raw.map((trace) => trace.x);
  // The smoothed traces get copies: an array shared by two traces would be extended twice.
  const copy = (arrays) => arrays.map((a) => Array.from(a));
  const indices = series.map((_, i) => i).concat(series.map((_, i) => n + i));
  window.Plotly.restyle(chart.gd, { x: xs.concat(copy(xs)), customdata: others.concat(copy(others)) }, indices);
  window.Plotly.relayout(chart.gd, {
    xaxis: { ...chart.gd.layout.xaxis, ...xAxisLayout(view.settings.x, chart.lastEpoch) },
    ...markerLayout(view.markers, view.settings.x),
  });
}

async function apply(view, payload) {
  if (!payload || typeof payload !== "object") return;
  if (payload.stream === view.stream && payload.seq === view.seq) return; // nothing new
  if (!payload.reset && (payload.stream !== view.stream || payload.base !== view.seq)) {
    // Not the update drawn last: ask once for the whole history.
    if (view.asked !== payload.seq && view.setTriggerValue) {
      view.asked = payload.seq;
      view.setTriggerValue("resync", { stream: view.stream, seq: view.seq, received: payload.seq });
    }
    return;
  }
  if (payload.reset) await loadPlotly(); // once per page; not part of the drawing's time
  const started = performance.now();
  if (payload.reset) {
    view.stream = payload.stream;
    await build(view, payload);
  } else {
    if (payload.markers) {
      view.markers = payload.markers;
      view.charts.forEach((chart) => window.Plotly.relayout(chart.gd, markerLayout(view.markers, view.settings.x)));
    }
    view.charts.forEach((chart) => extend(chart, payload.points || {}, view));
  }
  view.seq = payload.seq;
  view.asked = null;
  // For tests and benchmarks: the update drawn, and how long drawing it took.
  view.root.dataset.seq = String(view.seq);
  view.root.dataset.drawMs = (performance.now() - started).toFixed(1);
}

// ---- following a run through the live route ----------------------------------------------

function showStatus(view, status) {
  const { box, text, bar, fill, note } = view.status;
  box.hidden = false;
  box.dataset.status = status.status;
  text.textContent = status.text || "";
  bar.hidden = status.fraction === null || status.fraction === undefined;
  if (!bar.hidden) fill.style.width = `${Math.round(Math.min(Math.max(status.fraction, 0), 1) * 1000) / 10}%`;
  note.textContent = status.note || "";
  note.hidden = !status.note;
}

async function fetchOnce(view, follow) {
  const address = new URL(follow.url, window.location.href);
  if (follow.cursor) address.searchParams.set("cursor", follow.cursor);
  const response = await fetch(address, { cache: "no-store", credentials: "same-origin" });
  const answer = await response.json();
  if (!response.ok) {
    const error = new Error(answer.error || `the live route answered ${response.status}`);
    error.gone = response.status === 404; // the run was deleted (in another tab)
    throw error;
  }
  const payload = answer.payload;
  // The route's cursor is this view's record of what it drew; an answer on top of another
  // drawing (a remount, a page rerun in between) is not applied: the next request asks afresh.
  const follows = payload.reset || (payload.stream === view.stream && payload.base === view.seq);
  if (follows) {
    view.queue = view.queue.then(() => apply(view, payload));
    await view.queue;
    follow.cursor = answer.cursor;
  } else {
    follow.cursor = null;
  }
  showStatus(view, answer.status);
  view.message.textContent = "";
  return answer.status;
}

function startFollowing(view, config) {
  if (view.follow && view.follow.url === config.url && !view.follow.stopped) return; // already following
  stopFollowing(view);
  const follow = { url: config.url, interval: config.interval_ms || 500, cursor: null, stopped: false,
                   status: null, timer: null };
  view.follow = follow;
  const tick = async () => {
    if (follow.stopped) return;
    try {
      const status = await fetchOnce(view, follow);
      if (follow.stopped) return;
      // A new status (or an ended run, even at the first answer): the page reruns once, so its
      // widgets (the badge, Stop, Train) catch up and, once ended, it shows the outcome.
      const changed = follow.status !== null ? status.status !== follow.status : !status.active;
      if (changed && view.setTriggerValue) view.setTriggerValue("status", status.status);
      follow.status = status.status;
      if (!status.active) {
        follow.stopped = true;
        return;
      }
    } catch (error) {
      if (error.gone) { // nothing left to follow: the page reruns once and shows another run
        follow.stopped = true;
        if (view.setTriggerValue) view.setTriggerValue("status", "deleted");
        return;
      }
      view.message.textContent = `The live view could not be updated (it tries again): ${error.message}`;
    }
    follow.timer = setTimeout(tick, follow.interval);
  };
  tick();
}

function stopFollowing(view) {
  if (!view.follow) return;
  view.follow.stopped = true;
  clearTimeout(view.follow.timer);
  view.follow = null;
}

export default function liveChart(component) {
  const { data, parentElement, setTriggerValue } = component;
  let view = views.get(parentElement);
  if (!view) {
    view = createView(parentElement);
    views.set(parentElement, view);
  }
  view.setTriggerValue = setTriggerValue;
  if (data && data.follow) {
    startFollowing(view, data.follow);
    return () => stopFollowing(view); // unmounted: no requests for a view that is gone
  }
  stopFollowing(view);
  view.status.box.hidden = true;
  view.queue = view.queue.then(() => apply(view, data)).then(() => {
    view.message.textContent = "";
  }, (error) => {
    view.message.textContent = `The charts could not be drawn: ${error.message}`;
  });
}
