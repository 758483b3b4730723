// jobengine dashboard: live refresh of [data-live] regions, confirmations, select-all.
// Served from /static (Content-Security-Policy forbids inline script). No dependencies.
"use strict";
(function () {
  var interval = parseInt(document.body.getAttribute("data-refresh"), 10) || 2000;
  var busy = new WeakSet();

  function shouldSkip(el) {
    var active = document.activeElement;
    if (active && active !== document.body && el.contains(active) && active.matches("input, select, textarea")) return true;
    return !!el.querySelector("input[type=checkbox]:checked");  // keep a selection in progress
  }

  function refresh(el) {
    if (busy.has(el) || shouldSkip(el)) return;
    busy.add(el);
    fetch(el.getAttribute("data-live"), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (res) {
        if (res.status === 401) { window.location.reload(); return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined || shouldSkip(el)) return;
        var open = Array.prototype.map.call(el.querySelectorAll("details[open][data-key]"),
          function (d) { return d.getAttribute("data-key"); });
        el.innerHTML = html;  // server-rendered, autoescaped fragment
        open.forEach(function (key) {
          var d = el.querySelector('details[data-key="' + CSS.escape(key) + '"]');
          if (d) d.open = true;
        });
        el.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy.delete(el); });
  }

  function tick() {
    if (document.hidden) return;
    document.querySelectorAll("[data-live]").forEach(refresh);
  }

  if (document.querySelector("[data-live]")) window.setInterval(tick, interval);

  document.addEventListener("submit", function (event) {
    var source = event.submitter || event.target;
    var message = source.getAttribute("data-confirm") || event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      document.querySelectorAll('input[type=checkbox][name=id]').forEach(function (box) { box.checked = target.checked; });
    } else if (target.matches("[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });
})();
