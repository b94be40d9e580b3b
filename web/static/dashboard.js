// Live refresh of marked regions, ticking durations and busy buttons: no library, no CDN.
(function () {
  "use strict";

  var skew = 0; // server clock minus browser clock, in milliseconds

  function readServerNow(doc) {
    var when = Date.parse(doc.body.getAttribute("data-server-now") || "");
    if (!isNaN(when)) { skew = when - Date.now(); }
  }

  function human(seconds) {
    if (seconds < 0) { seconds = 0; }
    if (seconds < 1) { return Math.round(seconds * 1000) + " ms"; }
    if (seconds < 60) { return seconds.toFixed(1) + " s"; }
    var whole = Math.floor(seconds);
    var minutes = Math.floor(whole / 60), secs = whole % 60;
    var hours = Math.floor(minutes / 60); minutes %= 60;
    var days = Math.floor(hours / 24); hours %= 24;
    if (days) { return days + " d " + hours + " h"; }
    if (hours) { return hours + " h " + minutes + " min"; }
    return minutes + " min " + secs + " s";
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("[data-live-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-live-since"));
      if (!isNaN(since)) { el.textContent = human((now - since) / 1000); }
    });
  }

  function openDetails(el) {
    var open = {};
    el.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function schedule(el, delay) {
    window.setTimeout(function () { refresh(el.id); }, delay);
  }

  function refresh(id) {
    var el = document.getElementById(id);
    if (!el || !el.hasAttribute("data-refresh")) { return; }
    var every = parseInt(el.getAttribute("data-refresh"), 10) || 5000;
    if (document.hidden || el.querySelector("details[open].confirm")) { schedule(el, every); return; }
    document.body.classList.add("refreshing");
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok || answer.redirected) { throw new Error("status " + answer.status); }
        return answer.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(id);
        var current = document.getElementById(id);
        readServerNow(doc);
        document.body.classList.remove("stale");
        if (fresh && current) {
          var open = openDetails(current);
          fresh.querySelectorAll("details[id]").forEach(function (d) {
            if (d.id in open) { d.open = open[d.id]; }
          });
          current.replaceWith(document.importNode(fresh, true));
          tick();
          if (fresh.hasAttribute("data-refresh")) { schedule(fresh, every); }
        }
      })
      .catch(function () {
        document.body.classList.add("stale");
        schedule(el, every * 2);
      })
      .finally(function () { document.body.classList.remove("refreshing"); });
  }

  function busyButtons() {
    document.addEventListener("submit", function (event) {
      var button = event.target.querySelector("button[type=submit][data-busy-text]");
      if (!button) { return; }
      button.classList.add("busy");
      button.setAttribute("aria-busy", "true");
      button.textContent = button.getAttribute("data-busy-text");
      window.setTimeout(function () { button.disabled = true; }, 0);
    });
  }

  // Two confirmation panels open at once would lie on top of each other.
  function oneConfirmAtATime() {
    document.addEventListener("toggle", function (event) {
      var opened = event.target;
      if (!opened.matches || !opened.matches("details.confirm") || !opened.open) { return; }
      document.querySelectorAll("details.confirm[open]").forEach(function (other) {
        if (other !== opened) { other.open = false; }
      });
    }, true);
  }

  document.addEventListener("DOMContentLoaded", function () {
    readServerNow(document);
    busyButtons();
    oneConfirmAtATime();
    tick();
    window.setInterval(tick, 1000);
    document.querySelectorAll("[data-refresh][id]").forEach(function (el) {
      schedule(el, parseInt(el.getAttribute("data-refresh"), 10) || 5000);
    });
  });
}());
