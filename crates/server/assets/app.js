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
