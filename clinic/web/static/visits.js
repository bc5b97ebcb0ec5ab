/* The observation countdown, ticking between page loads.
 *
 * The server computes every countdown (seconds_left, from its own UTC clock) and writes it into
 * the page as text, so the page is right without JavaScript. This script only counts that figure
 * down once a second from the moment the element appeared (a board refresh brings a fresh figure),
 * so a wrong clock on this computer cannot move a discharge time.
 */
(function () {
  "use strict";

  function clock(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return h + ":" + (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var now = Date.now();
    var items = document.querySelectorAll("[data-seconds-left]");
    for (var i = 0; i < items.length; i++) {
      var el = items[i];
      if (!el.hasAttribute("data-deadline")) {
        var secs = parseInt(el.getAttribute("data-seconds-left"), 10);
        if (isNaN(secs)) continue;
        el.setAttribute("data-deadline", String(now + secs * 1000));
      }
      var left = Math.max(0, Math.round((Number(el.getAttribute("data-deadline")) - now) / 1000));
      var text = left > 0 ? clock(left) + " left" : (el.getAttribute("data-done-text") || "Observation minimum complete");
      if (el.textContent !== text) el.textContent = text;
    }
  }

  tick();
  window.setInterval(tick, 1000);
})();
