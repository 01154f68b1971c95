// Live delivery counts on an issue's page: polls the counts every two seconds while the
// issue is sending and updates the numbers in place. Without JavaScript the page still
// shows the counts (and a Refresh link).
(function () {
  "use strict";
  var box = document.querySelector("[data-live-counts]");
  if (!box) { return; }
  var url = box.getAttribute("data-live-counts");
  function update(data) {
    Object.keys(data.counts).forEach(function (state) {
      var cell = box.querySelector('[data-state="' + state + '"]');
      if (cell) { cell.textContent = String(data.counts[state]); }
    });
    var status = document.querySelector("[data-issue-status]");
    if (status) { status.textContent = data.status; }
    var total = 0, done = 0;
    Object.keys(data.counts).forEach(function (s) {
      total += data.counts[s];
      if (s !== "pending" && s !== "in_flight") { done += data.counts[s]; }
    });
    var bar = document.querySelector("progress[data-progress]");
    if (bar && total) { bar.max = total; bar.value = done; }
    return data.status === "sending";
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && update(data)) { window.setTimeout(poll, 2000); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
