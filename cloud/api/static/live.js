// Re-fetch the live fragment of the page every few seconds. Pauses while the tab is hidden, a
// button inside the fragment is being pressed, or someone is typing in it (a resolve note), so a
// one-tap acknowledge is never swallowed and a note is never wiped.
(function () {
  function start(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-every") || "2000", 10);
    var busy = false;
    el.addEventListener("submit", function () { busy = true; });
    setInterval(function () {
      var typing = document.activeElement && el.contains(document.activeElement) &&
        /^(INPUT|TEXTAREA)$/.test(document.activeElement.tagName);
      if (busy || document.hidden || typing) return;
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
