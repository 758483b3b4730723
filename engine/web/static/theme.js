// Runs before the page paints (not deferred), so a dark choice never flashes light:
// the theme this browser chose with the header's toggle ("dark" or "light"); none: the system's.
"use strict";
(function () {
  try {
    var theme = window.localStorage.getItem("jobengine.theme");
    if (theme === "dark" || theme === "light") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) { /* storage disabled: follow the system */ }
})();
