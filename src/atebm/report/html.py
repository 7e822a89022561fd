"""Renders a report state (the content of ``report.json``) to one self-contained HTML page.

Images are embedded as base64 ``data:`` URIs and the style sheet is inline, so the page opens offline and can be
mailed as one file. All text is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["render_html", "format_cell"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".webp": "image/webp"}

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1f3b63;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:22px} header .meta{font-size:12px;opacity:.8}
nav{background:#fff;border-bottom:1px solid #d8dce3;padding:8px 32px;font-size:13px}
nav a{margin-right:14px;color:#1f3b63;text-decoration:none;white-space:nowrap}
main{padding:16px 32px 48px 32px}
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:14px 20px;margin:14px 0}
section h2{font-size:17px;margin:0 0 10px 0;color:#1f3b63}
table.data{border-collapse:collapse;font-size:13px;margin:6px 0}
table.data th{background:#e8ecf3;text-align:left;padding:4px 10px;border:1px solid #c9d0db}
table.data td{padding:3px 10px;border:1px solid #d8dce3;font-variant-numeric:tabular-nums}
table.data td.num{text-align:right}
table.data tr:nth-child(even) td{background:#f7f8fa}
.protocol{font-size:12px;color:#39424f;margin-top:8px;background:#f7f8fa;border-left:3px solid #8aa2c8;padding:6px 10px}
.protocol dt{font-weight:600;float:left;clear:left;margin-right:6px}
.protocol dd{margin:0 0 2px 0}
.note{font-size:12px;color:#5a6472;margin-top:6px}
figure{margin:0} figure img{max-width:100%;image-rendering:pixelated;border:1px solid #e1e4ea}
figcaption{font-size:12px;color:#5a6472;margin-top:4px}
pre{background:#f7f8fa;padding:8px;overflow-x:auto;font-size:12px}
.missing{color:#a33;font-weight:600}
"""


def format_cell(value: Any) -> tuple[str, bool]:
    """Text of a table cell and whether it is numeric (right-aligned). Floats get 4 significant digits."""
    if value is None:
        return "—", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        if math.isnan(value):
            return "nan", True
        if math.isinf(value):
            return ("inf" if value > 0 else "-inf"), True
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}", True
        if abs(value) < 10:
            return f"{value:.4f}", True
        return (f"{value:.2f}" if abs(value) < 1000 else f"{value:.1f}"), True
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return value, True
    return str(value), False


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _anchor(key: str) -> str:
    return "s-" + "".join(ch if ch.isalnum() else "-" for ch in key)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _protocol_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _render_protocol(protocol: Mapping[str, Any] | None) -> str:
    if not protocol:
        return ""
    items = "".join(f"<dt>{_esc(k)}:</dt><dd>{_esc(_protocol_value(v))}</dd>" for k, v in protocol.items())
    return f'<dl class="protocol"><dt>protocol</dt><dd>&nbsp;</dd>{items}</dl>'


def _render_table(section: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in section["columns"])
    body = []
    for row in section["rows"]:
        cells = []
        for value in row:
            text, numeric = format_cell(value)
            cells.append(f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    out = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    out += _render_protocol(section.get("protocol"))
    if section.get("note"):
        out += f'<div class="note">{_esc(section["note"])}</div>'
    return out


def _render_text(section: Mapping[str, Any]) -> str:
    if section.get("preformatted"):
        return f"<pre>{_esc(section['text'])}</pre>"
    paragraphs = [p.strip() for p in section["text"].split("\n\n") if p.strip()]
    return "".join(f"<p>{_esc(p)}</p>" for p in paragraphs)


def _figure(src: str, alt: str, caption: str | None) -> str:
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{_esc(alt)}">{cap}</figure>'


def _render_image(section: Mapping[str, Any], run_dir: Path) -> str:
    path = run_dir / section["path"]
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return f'<p class="missing">image file missing: {_esc(section["path"])}</p>'
    return _figure(_data_uri(path.read_bytes(), mime), section["path"], section.get("caption"))


def _render_curves(section: Mapping[str, Any]) -> str:
    from .plots import curves_figure, figure_png

    png = figure_png(curves_figure(section["history"], section.get("events") or []))
    last = section["history"][-1]
    summary = ", ".join(f"{k}={format_cell(last[k])[0]}" for k in ("step", "k", "loss", "auc_adv", "auc_clean")
                        if k in last)
    caption = section.get("caption") or ""
    caption = (caption + " " if caption else "") + f"(last log line: {summary})"
    return _figure(_data_uri(png, "image/png"), section["heading"], caption)


def render_html(state: Mapping[str, Any], run_dir: str | Path) -> str:
    """The HTML page for a report state; image paths are resolved against ``run_dir``."""
    from .. import __version__

    run_dir = Path(run_dir)
    sections = state.get("sections", [])
    nav = "".join(f'<a href="#{_anchor(s["key"])}">{_esc(s.get("heading") or s["key"])}</a>' for s in sections)
    parts = []
    for section in sections:
        kind = section.get("kind")
        try:
            if kind == "table":
                body = _render_table(section)
            elif kind == "text":
                body = _render_text(section)
            elif kind == "image":
                body = _render_image(section, run_dir)
            elif kind == "curves":
                body = _render_curves(section)
            else:
                body = f'<p class="missing">unknown section kind {_esc(kind)}</p>'
        except (KeyError, TypeError, ValueError) as err:
            body = f'<p class="missing">section could not be rendered: {_esc(err)}</p>'
        parts.append(f'<section id="{_anchor(section["key"])}" data-key="{_esc(section["key"])}" '
                     f'data-kind="{_esc(kind)}"><h2>{_esc(section.get("heading") or section["key"])}</h2>'
                     f"{body}</section>")
    title = _esc(state.get("title") or "atebm run")
    meta = (f"run folder {_esc(run_dir.resolve().name)} · created {_esc(state.get('created', ''))} · "
            f"updated {_esc(state.get('updated', ''))} · atebm {_esc(__version__)} · "
            "score convention: higher = more in-distribution")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><header><h1>{title}</h1><div class=\"meta\">{meta}</div></header>"
        f"<nav>{nav}</nav><main>{''.join(parts) or '<p>This report has no sections yet.</p>'}</main></body></html>\n"
    )
