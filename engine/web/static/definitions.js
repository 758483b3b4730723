// jobengine definitions form: a live preview of the trigger's next 5 runs, rendered by the
// server (GET /definitions/preview) as the operator types. No dependencies; CSP-safe.
"use strict";
(function () {
  var preview = document.getElementById("trigger-preview");
  if (!preview) return;
  var form = preview.closest("form");
  var timer = null;
  var latest = 0;  // responses can arrive out of order: only the newest request's answer is shown
  var fields = ["type", "schedule", "timezone", "overlap", "catchUp", "at"];

  function update() {
    var sent = ++latest;
    var params = new URLSearchParams();
    fields.forEach(function (name) {
      var input = form.elements["trigger." + name];
      if (input && input.value) params.set(name, input.value);
    });
    fetch("/definitions/preview?" + params.toString(), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (html === null || sent !== latest) return;
        preview.innerHTML = html;  // server-rendered, autoescaped fragment
        preview.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: the next keystroke tries again */ });
  }

  function changed(event) {
    if (!event.target.name || event.target.name.indexOf("trigger.") !== 0) return;
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 250);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  update();
})();
