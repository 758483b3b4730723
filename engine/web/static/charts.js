// jobengine dashboard: the overview's history charts, drawn with the vendored uPlot from
// GET /api/charts (the rollup). Redrawn when the range or a filter changes, and after a live
// update of the overview at most every 30 s (the rollup moves a minute at a time).
"use strict";
(function () {
  var panel = document.getElementById("history");
  if (!panel || !window.uPlot) return;
  var state = { range: "1h", queue: "", kind: "", plots: {}, loaded: 0, drawn: 0 };
  window.__jobengineCharts = state;  // read by the browser tests

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  var SPECS = {
    throughput: [["completed", "completed", "--completed"], ["failed", "failed", "--failed"]],
    failure: [["failure_rate", "failure %", "--failed"]],
    wait: [["wait_p50", "p50", "--active"], ["wait_p95", "p95", "--waiting"], ["wait_p99", "p99", "--failed"]],
    run: [["run_p50", "p50", "--active"], ["run_p95", "p95", "--waiting"], ["run_p99", "p99", "--failed"]]
  };

  function options(box, spec, log) {
    var axis = { stroke: css("--muted"), grid: { stroke: css("--line") }, ticks: { stroke: css("--line") } };
    return {
      width: Math.max(240, box.clientWidth), height: 170,
      scales: { x: { time: true }, y: log ? { distr: 3 } : {} },
      axes: [axis, Object.assign({ size: 56 }, axis)],
      legend: { live: true },
      series: [{}].concat(spec.map(function (s) {
        return { label: s[1], stroke: css(s[2]), width: 1.5, spanGaps: false, points: { show: false } };
      }))
    };
  }

  function draw(data) {
    var series = data.series;
    Object.keys(SPECS).forEach(function (name) {
      var box = panel.querySelector('[data-chart="' + name + '"]');
      var columns = [series.t].concat(SPECS[name].map(function (s) { return series[s[0]]; }));
      if (state.plots[name]) state.plots[name].destroy();
      box.textContent = "";
      state.plots[name] = new window.uPlot(options(box, SPECS[name], name === "wait" || name === "run"), columns, box);
      box.setAttribute("data-points", String(series.t.length));
    });
    state.drawn += 1;
  }

  function fillSelect(select, names, current) {
    var first = select.options[0];
    select.textContent = "";
    select.appendChild(first);
    names.forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    });
    select.value = current;
  }

  function load() {
    state.loaded = Date.now();
    var query = new URLSearchParams({ range: state.range, queue: state.queue, kind: state.kind });
    fetch(panel.getAttribute("data-charts") + "?" + query, { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (data) {
        if (!data) return;
        var form = document.getElementById("chart-controls");
        fillSelect(form.elements.queue, data.queues, state.queue);
        fillSelect(form.elements.kind, data.kinds, state.kind);
        draw(data);
      })
      .catch(function () { /* offline for a moment: the next update tries again */ });
  }

  panel.addEventListener("click", function (event) {
    var button = event.target.closest("[data-range]");
    if (!button) return;
    state.range = button.getAttribute("data-range");
    panel.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b === button));
    });
    load();
  });
  panel.addEventListener("change", function (event) {
    if (event.target.name === "queue") state.queue = event.target.value;
    if (event.target.name === "kind") state.kind = event.target.value;
    load();
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    if (Date.now() - state.loaded > 30000) load();
  });
  new MutationObserver(function () { load(); })  // the theme changed: redraw in its colours
    .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  load();
})();
