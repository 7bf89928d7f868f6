// idlink UI behaviour, loaded from /assets (the Content-Security-Policy allows no inline script).
// 1. A submitted form's button is disabled and says so, so a long refresh or export is not sent twice.
// 2. Secured inputs (data-secured) get an eye button that reveals only what is being typed.
document.addEventListener('submit', function (e) {
  var b = e.target.querySelector('button[type=submit]');
  if (b) {
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    b.textContent = b.textContent + '…';
  }
});
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('input[data-secured]').forEach(function (input) {
    var eye = document.createElement('button');
    eye.type = 'button';
    eye.className = 'reveal';
    eye.textContent = '👁';
    eye.setAttribute('aria-label', 'Show what is typed');
    eye.setAttribute('aria-pressed', 'false');
    eye.addEventListener('click', function () {
      var shown = input.type === 'text';
      input.type = shown ? 'password' : 'text';
      eye.setAttribute('aria-pressed', shown ? 'false' : 'true');
    });
    input.after(eye);
  });
});
// 3. The mapping editor: choosing a Source lists that table's columns in every Source Column.
document.addEventListener('DOMContentLoaded', function () {
  var source = document.getElementById('source');
  if (!source) { return; }
  source.addEventListener('change', function () {
    var option = source.options[source.selectedIndex];
    var columns = option ? option.getAttribute('data-columns').split('\t').filter(function (c) { return c !== ''; }) : [];
    document.querySelectorAll('select.source-column').forEach(function (select) {
      var current = select.value;
      while (select.options.length > 1) { select.remove(1); }
      columns.forEach(function (c) {
        var o = document.createElement('option');
        o.textContent = c;
        o.value = c;
        if (c === current) { o.selected = true; }
        select.appendChild(o);
      });
    });
  });
});
// 4. A running job's page: polls its run (GET /api/job-runs/{run}) every second, shows the log
//    as it grows, and reloads the page for the report once the run ended.
document.addEventListener('DOMContentLoaded', function () {
  var status = document.querySelector('#run-state[data-poll]');
  if (!status) { return; }
  var url = status.getAttribute('data-poll');
  var log = document.getElementById('run-log');
  var tick = function () {
    fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (run) {
        if (log && typeof run.log === 'string') { log.textContent = run.log; log.scrollTop = log.scrollHeight; }
        var progress = document.getElementById('run-progress');
        if (progress && run.progress) {
          progress.textContent = 'task ' + run.progress.task + ' of ' + run.progress.of + ': ' + run.progress.name;
        }
        if (run.state !== 'Running') { window.location.reload(); return; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  };
  setTimeout(tick, 1000);
});
