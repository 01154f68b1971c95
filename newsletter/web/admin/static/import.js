// An import's progress page: polls the job every two seconds while it is queued or running,
// updates the numbers in place and reloads the page once it has finished (to show the
// outcome). Without JavaScript the page shows where the import stood (and a Refresh link).
(function () {
  "use strict";
  var box = document.querySelector("[data-live-import]");
  if (!box) { return; }
  var url = box.getAttribute("data-live-import");
  function update(data) {
    ["rows_done", "rows_total", "added", "updated", "skipped"].forEach(function (key) {
      var cell = box.querySelector('[data-count="' + key + '"]');
      if (cell && data[key] !== null) { cell.textContent = String(data[key]); }
    });
    var bar = box.querySelector("progress");
    if (bar && data.rows_total) { bar.max = data.rows_total; bar.value = data.rows_done; }
    var state = document.querySelector("[data-import-state]");
    if (state) { state.textContent = data.state; }
    return data.state === "queued" || data.state === "running";
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        if (update(data)) { window.setTimeout(poll, 2000); } else { window.location.reload(); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
