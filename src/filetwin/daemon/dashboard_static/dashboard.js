// filetwin dashboard: the live parts of server-rendered pages, nothing else.
// - #rows[data-src]: the management table's page, fetched again every 2 s and
//   whenever an event arrives (only the page shown is read on the server);
// - #events[data-stream]: the event log, fed by server-sent events.
"use strict";

(function () {
  const rows = document.getElementById("rows");
  const summary = document.getElementById("summary");
  let refreshing = false;

  async function refresh() {
    if (!rows || refreshing || document.hidden) return;
    refreshing = true;
    try {
      const answer = await fetch(rows.dataset.src, { credentials: "same-origin" });
      if (answer.ok) {
        const page = await answer.json();
        rows.innerHTML = page.rows;
        if (summary) summary.textContent = page.summary;
      }
    } catch (e) {
      // The daemon is restarting or gone: the next tick tries again.
    } finally {
      refreshing = false;
    }
  }

  if (rows) setInterval(refresh, 2000);

  const list = document.getElementById("events");
  const live = document.getElementById("live");
  if (list && list.dataset.stream && window.EventSource) {
    const source = new EventSource(list.dataset.stream);
    source.onopen = function () {
      if (live) { live.textContent = "(live)"; live.className = "on"; }
    };
    source.onerror = function () {
      if (live) { live.textContent = "(reconnecting…)"; live.className = "off"; }
    };
    source.onmessage = function (message) {
      const e = JSON.parse(message.data);
      const item = document.createElement("li");
      item.className = e.ok ? "ok" : "err";
      item.dataset.kind = e.kind;
      const when = document.createElement("time");
      when.textContent = e.time;
      const kind = document.createElement("b");
      kind.textContent = e.kind;
      item.append(when, " ", kind, " ");
      if (e.path) {
        const link = document.createElement("a");
        try {
          link.href = "/file?path=" + encodeURIComponent(e.path).replace(/%2F/g, "/");
        } catch (err) {
          link.href = "/";  // a name that is not UTF-8: the table links it exactly
        }
        link.textContent = e.path;
        item.append(link, " ");
      }
      const text = document.createElement("span");
      text.textContent = e.message;
      item.append(text);
      list.prepend(item);
      while (list.children.length > 200) list.lastElementChild.remove();
      refresh();
    };
  }
})();
