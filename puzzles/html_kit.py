"""The small static-site kit of the dataset browser (puzzles.show) and the evaluation report
(train.report): an output folder written atomically, one self-contained page (inline CSS and
scripts, so it opens from file:// with no server or network), and a filter bar over its items.

    with site_dir("report", force=True) as tmp:
        atomic_write(tmp / "index.html", page("title", controls(keys, "split", True) + items_html))

Items are elements of class "item" (add "wrong" to mark a wrong answer) with a data-key; groups
of items (class "group") hide when all their items are filtered out. Script errors and images that
fail to load are written into the page (#errors), so a headless-browser test can read them.
"""
from __future__ import annotations

import contextlib
import html
import os
from pathlib import Path
from typing import Iterator, Sequence

from puzzles.errors import atomic_dir, check_output_dir


def _is_site(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir() or not (path / "index.html").is_file():
        return False
    return all(f.is_file() and not f.is_symlink() and f.suffix in (".html", ".png") for f in path.iterdir())


@contextlib.contextmanager
def site_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temp directory beside `out`; on success it replaces `out` in one rename.

    An existing `out` is kept unless `force`; a half-written site never appears under `out`.
    """
    out = check_output_dir(out, force, _is_site, "a report or browser folder written here (index.html and pictures)")
    with atomic_dir(out) as tmp:
        yield tmp


CSS = """
body { font-family: sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
.controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ccc; }
.items { display: flex; flex-wrap: wrap; gap: 14px; }
.item { border: 1px solid #ccc; border-radius: 4px; padding: 8px; background: #fafafa; }
.item.wrong { border-color: #e00000; } .item.right { border-color: #2ecc40; }
.item h3 { font-size: .95em; margin: 0 0 6px; }
.row { display: flex; gap: 10px; align-items: flex-start; overflow-x: auto; }
.item img, .row img { display: block; max-width: 100%; }
table.metrics td { padding: 2px 10px; } table.metrics td:first-child { color: #555; }
#errors { color: #e00000; white-space: pre-wrap; }
.note { color: #777; font-size: .9em; }
"""

# Errors (script errors and images that fail to load) are written into #errors, so a headless
# browser test can read them from the dumped DOM; <body data-loaded> says the load event ran.
ERROR_JS = """
window.__errors = [];
function __report(msg) {
  window.__errors.push(msg);
  var el = document.getElementById('errors');
  if (el) { el.textContent = window.__errors.join('\\n'); el.hidden = false; }
}
window.onerror = function (msg, src, line) { __report('error: ' + msg + ' (line ' + line + ')'); };
window.addEventListener('error', function (e) {
  if (e.target && e.target.tagName === 'IMG') __report('image failed to load: ' + e.target.getAttribute('src'));
}, true);
window.addEventListener('load', function () { document.body.setAttribute('data-loaded', '1'); });
"""

# Filters over `.item` elements: #wrong-only hides items without class "wrong"; #key-filter keeps
# items whose data-key matches. The URL hash mirrors them (#wrong, #key=NAME, joined with &).
FILTER_JS = """
(function () {
  var wrong = document.getElementById('wrong-only'), key = document.getElementById('key-filter');
  var items = Array.prototype.slice.call(document.querySelectorAll('.item'));
  function fromHash() {
    var parts = decodeURIComponent(location.hash.replace(/^#/, '')).split('&');
    if (wrong) wrong.checked = parts.indexOf('wrong') >= 0;
    if (key) {
      key.value = '';
      parts.forEach(function (p) { if (p.indexOf('key=') === 0) key.value = p.slice(4); });
      if (key.selectedIndex < 0) key.value = '';
    }
  }
  function apply() {
    var shown = 0;
    items.forEach(function (it) {
      var ok = (!wrong || !wrong.checked || it.classList.contains('wrong')) &&
               (!key || key.value === '' || it.getAttribute('data-key') === key.value);
      it.hidden = !ok;
      if (ok) shown += 1;
    });
    document.querySelectorAll('.group').forEach(function (g) {
      g.hidden = g.querySelector('.item:not([hidden])') === null;
    });
    document.getElementById('shown').textContent = shown + ' of ' + items.length;
  }
  function toHash() {
    var parts = [];
    if (wrong && wrong.checked) parts.push('wrong');
    if (key && key.value) parts.push('key=' + encodeURIComponent(key.value));
    history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname);
    apply();
  }
  if (wrong) wrong.addEventListener('change', toHash);
  if (key) key.addEventListener('change', toHash);
  window.addEventListener('hashchange', function () { fromHash(); apply(); });
  fromHash();
  apply();
})();
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def controls(keys: Sequence[str], key_label: str, wrong_filter: bool) -> str:
    """The filter bar: optional "wrong only" checkbox, a select over `keys`, and the shown count."""
    parts = ['<div class="controls">']
    if wrong_filter:
        parts.append('<label><input type="checkbox" id="wrong-only"> wrong only</label> &nbsp;')
    if keys:
        options = "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in keys)
        parts.append(f'<label>{esc(key_label)} <select id="key-filter"><option value="">all</option>'
                     f'{options}</select></label> &nbsp;')
    parts.append('showing <span id="shown"></span></div>')
    return "".join(parts)


def page(title: str, body: str) -> str:
    """A complete HTML page: inline CSS and scripts only, so it works from file:// offline."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f'<style>{CSS}</style>\n<script>{ERROR_JS}</script></head>\n<body>\n'
            f'<pre id="errors" hidden></pre>\n{body}\n<script>{FILTER_JS}</script>\n</body></html>\n')
