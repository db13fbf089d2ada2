"""HTML building blocks of the pages: escaping, number and time formats, the page shell.

Every value written into a page goes through :func:`esc` (:func:`html.escape`
with quotes), in text and in attribute values alike; nothing from the database
is ever written raw. The page shell carries its style and its one script
inline (the pages work from ``file://`` offline: no CDN, no external file) and a
Content-Security-Policy that allows only that script, by its hash: were a value
ever written unescaped, an injected script still would not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from datetime import datetime

__all__ = ("SORT_SCRIPT", "cell", "esc", "fmt", "fmt_time", "shell", "table")

# The table sorter: a click on a header of a table.sortable sorts its body by that
# column, ascending then descending. A cell's data-sort value is its key (the text
# otherwise); two numeric keys compare as numbers, others as text with digits
# compared numerically; empty keys go last either way.
SORT_SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    return (v === null ? cell.textContent : v).trim();
  }
  function compare(a, b, dir) {
    if (a === "" || b === "") { return a === b ? 0 : (a === "" ? 1 : -1); }
    var x = Number(a), y = Number(b);
    if (!isNaN(x) && !isNaN(y)) { return dir * (x < y ? -1 : (x > y ? 1 : 0)); }
    return dir * a.localeCompare(b, undefined, {numeric: true});
  }
  function sortBy(table, th, col) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) { return compare(key(r.cells[col]), key(s.cells[col]), dir); });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (t) {
    Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(t, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(t, th, col); }
      });
    });
  });
})();
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #111; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; background: #eef; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
.banner { padding: 0.8em 1em; margin: 0.8em 0; font-size: 1.3em; font-weight: bold; }
.retracted { background: #c00; color: #fff; }
.muted, .test { background: #fd5; color: #000; font-size: 1em; }
.flag { display: inline-block; background: #eee; border-radius: 3px; padding: 0 3px;
        margin: 1px; font-size: 0.9em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
section.cand { border-top: 1px solid #ddd; margin-top: 1em; }
img { max-width: 100%; height: auto; }
.pictures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.pictures img { flex: 0 1 auto; min-width: 300px; max-width: calc(50% - 0.5em); }
.note { color: #555; font-style: italic; }
"""


def esc(value: object) -> str:
    """*value* as text escaped for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, spec: str = ".3g") -> str:
    """A number formatted with *spec*; ``-`` for None."""
    return "-" if value is None else format(value, spec)


def fmt_time(value: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS UTC``; ``-`` for None."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def cell(value: object, *, sort: object | None = None, numeric: bool = False,
         raw: str | None = None) -> str:
    """One ``<td>``: escaped *value* (or *raw*, markup built by this package) with a sort key."""
    attrs = ' class="num"' if numeric else ""
    if sort is not None:
        attrs += f' data-sort="{esc(sort)}"'
    return f"<td{attrs}>{esc(value) if raw is None else raw}</td>"


def table(headers: Sequence[tuple[str, str]], rows: Iterable[str], *, sortable: bool = False,
          table_id: str = "") -> str:
    """A table: *headers* as (column key, label), *rows* as ``<tr>`` markup."""
    attrs = (f' id="{esc(table_id)}"' if table_id else "") + (
        ' class="sortable"' if sortable else "")
    head = "".join(f'<th data-col="{esc(key)}" scope="col">{esc(label)}</th>'
                   for key, label in headers)
    return (f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>")


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


CSP = ("default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
       f"script-src '{_script_hash(SORT_SCRIPT)}'; base-uri 'none'; form-action 'none'")
"""The pages' Content-Security-Policy: their images, their style, their one script."""


def shell(title: str, body: str) -> str:
    """A whole HTML document: *title* (plain text, escaped here) and *body* (markup)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n<script>{SORT_SCRIPT}</script>\n</body></html>\n")
