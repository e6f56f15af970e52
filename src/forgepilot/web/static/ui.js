// Progressive enhancement only: every page reads fine without it.
// 1. Live numbers: elements with data-live="KEY" follow /ui/stream (server-sent events).
// 2. Actions ask for confirmation before they are sent.
(function () {
  "use strict";
  var live = document.querySelectorAll("[data-live]");
  if (live.length && window.EventSource) {
    var source = new EventSource("/ui/stream");
    source.onmessage = function (message) {
      var data = JSON.parse(message.data);
      live.forEach(function (el) {
        var value = data[el.getAttribute("data-live")];
        if (value === undefined) return;
        if (el.getAttribute("data-format") === "pct") value = (100 * value).toFixed(0) + "%";
        el.textContent = value;
      });
    };
    window.addEventListener("beforeunload", function () { source.close(); });
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();
