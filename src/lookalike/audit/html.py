"""The audit as one HTML page that stands alone: thumbnails inside it (JPEG data URIs), no script, no fetch.

It opens offline, can be mailed or attached to an issue, and shows for each
kind its count, the precision measured on the collection and what it means,
then the findings, surest first, with the photos involved side by side.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import TYPE_CHECKING

from lookalike.ingest.decode import ImageError, load_rgb
from lookalike.ingest.names import escaped
from lookalike.store.files import write_text_atomic

if TYPE_CHECKING:
    from lookalike.audit.report import AuditReport

__all__ = ["THUMBNAIL_SIDE", "write_html"]

#: Longest side of a thumbnail in the page.
THUMBNAIL_SIDE = 160

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
.finding{display:inline-block;vertical-align:top;width:340px;margin:.4em;padding:.4em;border:1px solid #ccc;
border-radius:4px}
.finding img{max-width:160px;max-height:160px;margin-right:4px}.score{font-weight:bold}
.path{font-size:11px;color:#555;word-break:break-all}.missing{display:inline-block;width:160px;color:#a00}
"""


def _thumbnail(path: str) -> str:
    """An ``<img>`` holding a small JPEG of the photo, or a note when it cannot be read."""
    try:
        image = load_rgb(path)
    except (ImageError, OSError):
        return '<span class="missing">(cannot be shown)</span>'
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/jpeg;base64,{data}">'


def _text(value: object) -> str:
    return html.escape(str(escaped(value)))


def write_html(report: AuditReport, path: str | os.PathLike, thumbnails: int = 200) -> os.PathLike:
    """Write ``report`` as a page at ``path`` (atomically), with thumbnails for the first ``thumbnails`` findings
    of each kind (the rest are listed by name)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lookalike audit</title>",
        f"<style>{_STYLE}</style></head><body><h1>Audit</h1>",
    ]
    if report.classes or report.splits:
        parts.append(
            f"<p>{len(report.classes)} classes, splits {_text(', '.join(report.splits) or 'none')} "
            f"(from {_text(report.source)})</p>"
        )
    parts.append("<table><tr><th>kind</th><th>findings</th><th>expected precision</th><th>measured on</th></tr>")
    for kind, values in report.kinds.items():
        expected = values.get("expected_precision")
        parts.append(
            f"<tr><td><a href='#{kind}'>{kind}</a></td><td>{values['count']}</td>"
            f"<td>{'' if expected is None else f'{expected:.2f}'}</td><td>{_text(values.get('basis', ''))}</td></tr>"
        )
    parts.append("</table>")
    for kind, values in report.kinds.items():
        rows = report.findings[report.findings["kind"] == kind]
        if not len(rows):
            continue
        parts.append(f"<h2 id='{kind}'>{kind} ({len(rows)})</h2><p>{_text(values['meaning'])}</p>")
        for number, row in enumerate(rows.itertuples()):
            images = "".join(_thumbnail(p) for p in row.paths[:2]) if number < thumbnails else ""
            suggestion = f" → <b>{_text(row.suggested_label)}</b>" if isinstance(row.suggested_label, str) else ""
            names = "<br>".join(_text(p) for p in row.paths)
            parts.append(
                f"<div class='finding'>{images}<div><span class='score'>{row.score:.2f}</span> "
                f"{_text(row.reason)}{suggestion}</div><div class='path'>{names}</div></div>"
            )
    parts.append("</body></html>\n")
    return write_text_atomic(path, "".join(parts))
