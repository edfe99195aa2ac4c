// Re-fetch the live fragment of the page every few seconds. Pauses while the tab is hidden or a
// button inside the fragment is being pressed, so a one-tap acknowledge is never swallowed.
(function () {
  function start(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-every") || "2000", 10);
    var busy = false;
    el.addEventListener("submit", function () { busy = true; });
    setInterval(function () {
      if (busy || document.hidden) return;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "live" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null && html !== undefined && !busy) { el.innerHTML = html; } })
        .catch(function () {});
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(start);
  });
})();
