/* Follow the Airflow UI's colour mode. The Airflow 3 UI (Chakra UI v3 + next-themes) keeps the user's choice in
   localStorage under "theme" ("light", "dark" or "system") and puts the resolved mode as a class on its <html>.
   Same origin, so this page reads both; "system" or nothing falls back to prefers-color-scheme. The storage event
   fires here when the user flips the toggle in the Airflow UI around this iframe, so the page follows live. */
(function () {
  'use strict';
  var media = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  function pick() {
    var stored = null;
    try { stored = window.localStorage.getItem('theme'); } catch (e) { stored = null; }
    if (stored === 'dark' || stored === 'light') return stored;
    try {
      if (window.parent !== window) {
        var cls = window.parent.document.documentElement.classList;
        if (cls.contains('dark')) return 'dark';
        if (cls.contains('light')) return 'light';
      }
    } catch (e) { /* not same-origin: ignore */ }
    return media && media.matches ? 'dark' : 'light';
  }
  function apply() { document.documentElement.setAttribute('data-theme', pick()); }
  apply();
  window.addEventListener('storage', function (e) { if (e.key === null || e.key === 'theme') apply(); });
  if (media && media.addEventListener) media.addEventListener('change', apply);
})();
