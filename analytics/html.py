"""The report as one self-contained HTML page: a Jinja2 template with autoescaping (every title, text and
name from the data or the config is escaped; only the tables pandas renders and the embedded PNGs are
markup)."""

from __future__ import annotations

import base64
from typing import Any

from analytics.sections import Report

TEMPLATE = """<!doctype html><html><head><meta charset='utf-8'>
<title>{{ report.title }}</title><style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}\
img{max-width:100%;margin:.5em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em}
</style></head><body><h1>{{ report.title }}</h1>
{% for section in sections %}<h2>{{ section.title }}</h2><p>{{ section.text }}</p>
{% for table in section.tables %}<h3>{{ table.name }}</h3>
{% if table.html is none %}<p>(no rows)</p>{% else %}{{ table.html }}{% endif %}
{% endfor %}{% for figure in section.figures %}<img alt='{{ figure.name }}' src='data:image/png;base64,{{ figure.data }}'>
{% endfor %}{% endfor %}</body></html>
"""


def _number(x: float) -> str:
    """Thousands with separators and no decimals; rates and small values with four significant digits."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def render_html(report: Report, images: dict[str, bytes]) -> str:
    """The report as one self-contained HTML page (plots embedded as PNG)."""
    from jinja2 import Environment
    from markupsafe import Markup

    sections: list[dict[str, Any]] = [
        {
            "title": section["title"],
            "text": section["text"],
            "tables": [
                {
                    "name": name,
                    # pandas escapes the cells it renders (escape=True by default): the table is markup.
                    "html": Markup(table.to_html(index=False, float_format=_number, na_rep=""))
                    if len(table)
                    else None,
                }
                for name, table in section["tables"].items()
            ],
            "figures": [
                {"name": name, "data": base64.b64encode(images[name]).decode()} for name in section["figures"]
            ],
        }
        for section in report.sections
    ]
    environment = Environment(autoescape=True, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE).render(report=report, sections=sections)
