// Canopy Ops UI: live pages and confirmations. The page's content is
// fetched again every few seconds and replaced, so that it is never more
// than that behind the cluster.
(function () {
  "use strict";
  var every = parseInt(document.body.dataset.refresh || "0", 10);
  document.addEventListener("submit", function (e) {
    var b = e.submitter || e.target.querySelector("button");
    var msg = b && b.dataset.confirm;
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });
  if (!every) { return; }
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(location.pathname + location.search, { headers: { "X-Canopy-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { document.getElementById("main").innerHTML = html; } })
      .catch(function () {})
      .finally(function () { busy = false; });
  }
  setInterval(refresh, every);
})();
