"""Dataset browser: a self-contained HTML directory of a built dataset's examples.

    python -m puzzles.show data/sudoku-extreme-1k [--split test|train|all] [--n 16] [--out DIR] [--force]

Shows `n` groups per split (spread evenly over the split), each group one row: the original puzzle
and its augmented copies side by side, each copy with its input -> label examples. Open the printed
index.html from disk (file://): no server, no network, nothing external. Also holds the small site
helpers (`site_dir`, `page`, filter script) that train.report reuses for evaluation reports.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from puzzles.errors import PuzzleError, atomic_write, run_cli
from puzzles.render import caption, grid_spec, hstack, render, save_png, vstack

MAX_COPIES = 8       # augmented copies shown per group
MAX_EXAMPLES = 4     # examples shown per puzzle (ARC tasks have up to ~10 demos)


# ----------------------------------------------------------------------------- site helpers

def _is_site(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir() or not (path / "index.html").is_file():
        return False
    return all(f.is_file() and not f.is_symlink() and f.suffix in (".html", ".png") for f in path.iterdir())


@contextlib.contextmanager
def site_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temp directory beside `out`; on success it replaces `out` in one rename.

    An existing `out` is kept unless `force`; a half-written site never appears under `out`.
    """
    out = Path(out)
    if out.exists() and not force:
        raise PuzzleError(f"{out} already exists (pass --force to replace it)")
    if out.exists() and not _is_site(out):  # --force replaces a site we wrote, nothing else
        raise PuzzleError(f"{out} is not a report/browser folder written here (index.html and pictures "
                          f"only); --force only replaces such a folder: choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as err:
        blocker = next((p for p in out.parents if p.exists()), None)
        why = f"{blocker} is not a directory" if blocker and not blocker.is_dir() else err.strerror or err
        raise PuzzleError(f"cannot write output directory {out}: {why}") from None
    try:
        yield tmp
        old = None
        if out.exists():  # --force: move the old site aside first so the swap is one rename
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "site")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


# ----------------------------------------------------------------------------- dataset browser

def pair_image(spec: dict, inp: np.ndarray, lab: np.ndarray):
    """One example as input | label images, labelled."""
    family = spec["family"]
    return hstack([caption(render(family, inp, meta=spec, given=inp), "input"),
                   caption(render(family, lab, meta=spec, given=inp), "label")])


def spread(total: int, n: int) -> np.ndarray:
    """Up to `n` indices spread evenly over range(total) (first and last included)."""
    if total <= 0 or n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(np.int64))


def split_section(root: Path, split: str, names: list[str], n: int, out: Path) -> str:
    """HTML for one split; writes one PNG per shown puzzle into `out`."""
    from puzzles.dataset import load_split  # lazy: keeps `puzzles.render` importable on its own

    data = load_split(root, split)
    spec = grid_spec(data.meta)
    groups = spread(len(data.group_indices) - 1, n)
    parts = [f'<h2>{esc(split)}: {len(data)} examples, {len(data.puzzle_identifiers)} puzzles, '
             f'{len(data.group_indices) - 1} groups (showing {len(groups)})</h2>']
    for g in groups:
        first, last = int(data.group_indices[g]), int(data.group_indices[g + 1])
        items = []
        for p in range(first, min(last, first + MAX_COPIES)):
            rows = np.arange(data.puzzle_indices[p], data.puzzle_indices[p + 1])[:MAX_EXAMPLES]
            if not len(rows):
                continue
            inputs, labels = data.examples(rows)
            pid = int(data.puzzle_identifiers[p])
            name = names[pid] if 0 < pid < len(names) else f"puzzle {p}"
            img = vstack([pair_image(spec, i, l) for i, l in zip(inputs, labels)], gap=14)
            fname = f"{split}_p{p}.png"
            save_png(img, out / fname)
            more = int(data.puzzle_indices[p + 1] - data.puzzle_indices[p]) - len(rows)
            note = f' <span class="note">(+{more} more examples)</span>' if more > 0 else ""
            items.append(f'<div class="item" data-key="{esc(split)}"><h3>{esc(name)}{note}</h3>'
                         f'<img src="{fname}" alt="{esc(name)}"></div>')
        extra = last - first - len(items)
        note = f' <span class="note">(+{extra} more copies)</span>' if extra > 0 else ""
        parts.append(f'<div class="group"><h3>group {g}: {last - first} puzzle(s){note}</h3>'
                     f'<div class="row">{"".join(items)}</div></div>')
    return "\n".join(parts)


def write_browser(dataset: str | os.PathLike, split: str = "test", n: int = 16,
                  out: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write the browser for `dataset` and return the path of its index.html."""
    from puzzles.dataset import load_identifiers, load_split

    root = Path(dataset)
    names = load_identifiers(root)  # raises PuzzleError if `root` is not a dataset
    splits = ["train", "test"] if split == "all" else [split]
    out = Path(out) if out is not None else root / "browser" / split
    with site_dir(out, force) as tmp:
        sections = [split_section(root, s, names, n, tmp) for s in splits]
        meta = grid_spec(load_split(root, splits[0]).meta)
        body = (f"<h1>Dataset {esc(root.name)}</h1><p>{esc(root.resolve())} &middot; family "
                f"{esc(meta['family'])}</p>" + controls(splits if len(splits) > 1 else [], "split", False)
                + "\n".join(sections))
        atomic_write(tmp / "index.html", page(f"dataset {root.name}", body))
    return out / "index.html"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m puzzles.show", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset directory (with identifiers.json, train/, test/)")
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--n", type=int, default=16, help="groups to show per split")
    parser.add_argument("--out", default=None, help="output directory (default DATASET/browser/SPLIT)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise PuzzleError(f"--n must be at least 1, got {args.n}")
    print(write_browser(args.dataset, args.split, args.n, args.out, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
