// The sign-up form's one script: when the reader left "Time zone" empty, fill it with the
// zone their browser reports (an IANA name such as Europe/Paris), so an issue can reach
// them at their own morning. The reader sees the value and may change or clear it; the
// hidden field tells the server the value came from the browser, so a zone the server does
// not know is dropped rather than refused. Without this script the form works the same:
// no zone means the newsletter's.
(function () {
  "use strict";
  var field = document.getElementById("timezone");
  var detected = document.getElementById("timezone-detected");
  if (!field || !detected || field.value !== "") { return; }
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    return;
  }
  if (zone === "" || zone.length > 100) { return; }
  field.value = zone;
  detected.value = zone;
}());
