// jobengine dashboard: live regions, the refresh control, confirmations, select-all.
// Served from /static (the Content-Security-Policy forbids inline script). Fragments are
// fetched and morphed into place by the vendored htmx + idiomorph (focus, scroll, open
// <details> and ticked boxes survive); this file only decides WHEN: on a server-sent event
// from /events (debounced to the chosen interval), or, while that stream is down, by htmx
// polling at the chosen interval. The choice (paused, 1/2/5/15/60 s) is kept per browser.
"use strict";
(function () {
  var KEY = "jobengine.refresh";
  var CHOICES = ["pause", "1", "2", "5", "15", "60"];
  var state = { pushed: false, last: 0, timer: null, events: 0, skipped: 0, refreshes: 0 };
  window.__jobengine = state;  // read by the browser tests

  function regions() { return document.querySelectorAll("[data-live]"); }

  function choice() {
    var saved = null;
    try { saved = window.localStorage.getItem(KEY); } catch (e) { /* storage disabled */ }
    if (CHOICES.indexOf(saved) >= 0) return saved;
    var ms = parseInt(document.body.getAttribute("data-refresh"), 10) || 2000;
    var fallback = String(Math.max(1, Math.round(ms / 1000)));
    return CHOICES.indexOf(fallback) >= 0 ? fallback : "2";
  }

  function intervalMs() { var c = choice(); return c === "pause" ? null : parseInt(c, 10) * 1000; }

  // Push when the stream is up; htmx polling ("every Ns") only while it is down.
  function configure() {
    var c = choice();
    regions().forEach(function (el) {
      el.setAttribute("hx-get", el.getAttribute("data-live"));
      el.setAttribute("hx-swap", "morph:innerHTML");
      var trigger = "jobengine:refresh";
      if (c !== "pause" && !state.pushed) trigger += ", every " + c + "s";
      el.setAttribute("hx-trigger", trigger);
      window.htmx.process(el);
    });
    var badge = document.getElementById("live-state");
    if (badge) {
      var shown = c === "pause" ? "paused" : state.pushed ? "live" : "polling";
      badge.textContent = shown;
      badge.setAttribute("data-state", shown);
    }
  }

  function refreshNow() {
    state.timer = null;
    if (document.hidden || intervalMs() === null) return;
    state.last = Date.now();
    state.refreshes += 1;
    regions().forEach(function (el) { window.htmx.trigger(el, "jobengine:refresh"); });
  }

  // At most one refresh per interval: the first change at once, a burst's last one later.
  function refreshSoon() {
    var every = intervalMs();
    if (every === null) { state.skipped += 1; return; }
    if (state.timer !== null) return;
    state.timer = window.setTimeout(refreshNow, Math.max(0, state.last + every - Date.now()));
  }

  function listen() {
    if (!window.EventSource || !regions().length) return;
    var source = new EventSource("/events");
    source.addEventListener("ready", function () {
      var wasPolling = !state.pushed;
      state.pushed = true;
      configure();
      if (wasPolling) refreshSoon();  // changes may have been missed while disconnected
    });
    source.addEventListener("change", function () { state.events += 1; refreshSoon(); });
    source.addEventListener("error", function () {
      if (state.pushed) { state.pushed = false; configure(); }  // the browser retries; poll meanwhile
    });
  }

  function setUp() {
    var control = document.getElementById("refresh-control");
    if (control) {
      control.value = choice();
      control.addEventListener("change", function () {
        try { window.localStorage.setItem(KEY, control.value); } catch (e) { /* storage disabled */ }
        configure();
        if (control.value !== "pause") refreshSoon();
      });
    }
    if (!regions().length) return;
    window.Idiomorph.defaults.ignoreActiveValue = true;  // the field being typed in keeps its text
    window.Idiomorph.defaults.callbacks.beforeAttributeUpdated = function (name, el) {
      // The server never ticks a box or opens a <details>: keep what the operator did.
      return !((name === "checked" && el.type === "checkbox") || (name === "open" && el.tagName === "DETAILS"));
    };
    document.body.addEventListener("htmx:afterSwap", function (event) {
      event.detail.target.setAttribute("data-refreshed", String(Date.now()));
    });
    document.body.addEventListener("htmx:responseError", function (event) {
      if (event.detail.xhr.status === 401) window.location.reload();  // the session ended
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden) refreshSoon(); });
    configure();
    listen();
  }

  document.addEventListener("submit", function (event) {
    var source = event.submitter || event.target;
    var message = source.getAttribute("data-confirm") || event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      document.querySelectorAll("input[type=checkbox][name=id]").forEach(function (box) { box.checked = target.checked; });
    } else if (target.matches("[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });

  // --- times: the server writes UTC; show them in this browser's zone, UTC on hover -----------
  var clock = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  var full = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
               second: "2-digit", hour12: false, timeZoneName: "short" };

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      var utc = when.toISOString().slice(0, 19).replace("T", " ") + " UTC";
      var style = el.getAttribute("data-local");
      if (style === "clock") el.textContent = when.toLocaleTimeString([], clock);
      else if (style === "full") el.textContent = when.toLocaleString([], full);
      el.title = (style === "relative" ? when.toLocaleString([], full) + " \u00b7 " : "") + utc;
    });
  }

  // --- theme: follow the system, or this browser's choice ---------------------------------------
  var THEME_KEY = "jobengine.theme";
  var THEMES = ["system", "dark", "light"];

  function theme() {
    var t = null;
    try { t = window.localStorage.getItem(THEME_KEY); } catch (e) { /* storage disabled */ }
    return THEMES.indexOf(t) > 0 ? t : "system";
  }

  function showTheme() {
    var t = theme();
    if (t === "system") document.documentElement.removeAttribute("data-theme");
    else document.documentElement.setAttribute("data-theme", t);
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.textContent = t === "system" ? "\u25d0 auto" : t === "dark" ? "\u263e dark" : "\u2600 light";
      button.setAttribute("data-theme", t);
    }
  }

  function nextTheme() {
    var t = THEMES[(THEMES.indexOf(theme()) + 1) % THEMES.length];
    try {
      if (t === "system") window.localStorage.removeItem(THEME_KEY);
      else window.localStorage.setItem(THEME_KEY, t);
    } catch (e) { /* storage disabled */ }
    showTheme();
  }

  // --- keyboard: "/" search, "g" then a letter goes to a page, "?" help -------------------------
  var PAGES = { o: "/", j: "/jobs", d: "/definitions", c: "/cron", n: "/nodes", a: "/alerts" };
  var pendingG = 0;

  function typing(target) {
    return target.closest && target.closest("input, select, textarea, [contenteditable=true]");
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var help = document.getElementById("shortcuts");
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target) || (help && help.open)) return;
    if (event.key === "/") {
      var box = document.getElementById("search");
      if (box) { event.preventDefault(); box.focus(); box.select(); }
    } else if (event.key === "?") {
      if (help) { event.preventDefault(); help.showModal(); }
    } else if (event.key === "g") {
      pendingG = Date.now();
    } else if (pendingG && Date.now() - pendingG < 1500 && PAGES[event.key]) {
      pendingG = 0;
      window.location.assign(PAGES[event.key]);
    } else {
      pendingG = 0;
    }
  });

  var toggle = document.getElementById("theme-toggle");
  if (toggle) toggle.addEventListener("click", nextTheme);
  showTheme();
  localTimes(document);
  document.body.addEventListener("htmx:afterSettle", function (event) { localTimes(event.detail.elt); });
  setUp();
  // Deferred scripts run after the page is shown: say when the page's controls are wired.
  document.documentElement.setAttribute("data-js", "ready");
})();
