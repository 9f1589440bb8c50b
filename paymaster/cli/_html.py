"""``paymaster report --html``: the report as one self-contained page, charts drawn as inline SVG.

Everything is in the file: styles, SVG, and a dozen lines of script that
check each chart laid out (a non-empty bounding box) and mark the page, which
the browser test reads. No fonts, scripts or images are fetched, so the page
opens offline and in mail attachments. Geometry uses floats; every figure
printed on the page is the exact Decimal from the ledger.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal
from html import escape

from ..ledger._economics import AgentEconomics
from ..ledger._shadows import ShadowDay
from ..ledger._views import Charts, Histogram, QualityPoint, Report
from ._tables import usd as fmt_usd

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
WIDTH = 760

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:820px;
color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#666;font-size:12px}
.tiles{display:grid;grid-template-columns:repeat(4,1fr);gap:8px}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px}.tile b{display:block;font-size:18px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{padding:3px 6px;border-bottom:1px solid #eee}
th{text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{display:block;margin:6px 0}svg text{font:11px system-ui,sans-serif;fill:#333}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""

# Marks each chart that laid out with something in it, and each named table that laid out with its count of rows;
# the browser test reads the marks, a reader never sees them.
_SCRIPT = """
window.addEventListener("error", function (e) {
  document.body.setAttribute("data-errors", (document.body.getAttribute("data-errors") || "") + e.message + ";");
});
document.addEventListener("DOMContentLoaded", function () {
  var charts = document.querySelectorAll("svg.chart"), drawn = 0;
  charts.forEach(function (svg) {
    var box = svg.getBBox(), marks = svg.querySelectorAll(".mark").length;
    if (box.width > 0 && box.height > 0 && marks > 0) { svg.setAttribute("data-rendered", marks); drawn += 1; }
  });
  document.body.setAttribute("data-charts", drawn + "/" + charts.length);
  document.querySelectorAll("table[data-table]").forEach(function (table) {
    var box = table.getBoundingClientRect();
    if (box.width > 0 && box.height > 0) { table.setAttribute("data-rendered", table.rows.length - 1); }
  });
});
"""


def render_html(report: Report) -> str:
    """The whole page for a report built with ``charts=True``."""
    s = report.summary
    charts = report.charts
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Paymaster report: {escape(report.url)}</title><style>{_STYLE}</style></head><body>",
        "<h1>Paymaster cost report</h1>",
        f"<div class='muted'>{escape(report.url)} · {escape(_scope_text(report))} · generated "
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC · days are UTC days</div>",
        _tiles(report),
    ]
    if s.unpriced:
        parts.append(f"<p class='muted'>{s.unpriced:,} tasks had a call of unknown price; they are counted but "
                     "left out of the money figures (unknown, not $0).</p>")
    if charts is not None and charts.days:
        parts += ["<h2>Spend over time, by agent</h2>", _daily_chart(charts, report)]
    parts += ["<h2>Savings against the all-frontier baseline</h2>", _savings_chart(report)]
    if charts is not None and charts.tiers:
        parts += ["<h2>Tier split</h2>", _bars("tiers", [
            (t.tier or "-", t.cost, f"{fmt_usd(t.cost)} · {t.calls:,} calls · {t.tokens:,} tokens")
            for t in charts.tiers])]
    parts += ["<h2>Cost per successful outcome, by agent</h2>", _outcome_chart(report)]
    if charts is not None and charts.histograms:
        parts.append("<h2>Cost per task, by agent</h2><p class='muted'>Tasks per cost bin (log scale); grey line: "
                     "the agent's median, red dashed line: 3x the median (above it a task is an anomaly).</p>")
        parts += [_histogram(h, i) for i, h in enumerate(charts.histograms)]
        parts.append(_percentile_table(report))
    parts += [f"<h2>Top spenders by {escape(report.by)}</h2>", _bars("top", [
        (str(r.key), r.cost, f"{fmt_usd(r.cost)} · {r.tasks:,} tasks") for r in report.top])]
    if charts is not None and charts.quality:
        parts += ["<h2>Cost and quality of each tier (eval records)</h2>",
                  "<p class='muted'>Tasks recorded by <code>paymaster eval --record</code> (tenant eval, one tag per "
                  "tier): the share that succeeded against the cost per task, cheapest tier first.</p>",
                  _quality_chart(charts.quality)]
    for key, rows in report.showback.items():
        bars = [("(untagged)" if r.key is None else r.key, r.cost, f"{fmt_usd(r.cost)} · {r.tasks:,} tasks")
                for r in rows]
        parts += [f"<h2>Showback by tag {escape(key)}</h2>", _bars(f"showback-{key}", bars)]
    parts += [_shadow(report.shadow), _economics(report), _raises(report), _anomalies(report),
              f"<script>{_SCRIPT}</script></body></html>"]
    return "\n".join(parts)


def _scope_text(report: Report) -> str:
    sc = report.scope
    bits = [f"since {_day(sc.since)}" if sc.since else "", f"until {_day(sc.until)}" if sc.until else "",
            f"tenant {sc.tenant}" if sc.tenant else "", f"agent {sc.agent}" if sc.agent else "",
            *(f"{k}={v}" for k, v in sorted(sc.tags.items()))]
    return ", ".join(b for b in bits if b) or "all finished tasks"


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _tiles(report: Report) -> str:
    s = report.summary
    rate = "-" if s.success_rate is None else f"{100 * s.success_rate:.1f}%"
    share = f" ({100 * s.savings / s.baseline:.1f}%)" if s.baseline else ""
    tiles = [("tasks", f"{s.tasks:,}"), ("succeeded", rate), ("cost", fmt_usd(s.cost)),
             ("all-frontier baseline", fmt_usd(s.baseline)), ("savings", fmt_usd(s.savings) + share),
             ("cost per successful outcome", fmt_usd(s.cost_per_success)),
             ("cache hits", f"{s.cache_hits:,}"), ("saved by the cache", fmt_usd(s.cache_saved))]
    return "<div class='tiles'>" + "".join(
        f"<div class='tile'><span class='muted'>{escape(k)}</span><b>{escape(v)}</b></div>" for k, v in tiles
    ) + "</div>"


def _legend(names: Sequence[str]) -> str:
    return "<div class='legend'>" + "".join(
        f"<span><i style='background:{PALETTE[i % len(PALETTE)]}'></i>{escape(n)}</span>" for i, n in enumerate(names)
    ) + "</div>"


def _daily_chart(charts: Charts, report: Report) -> str:
    """Stacked bars of priced spend per day and agent; anomalous days marked with a red triangle."""
    days, agents = charts.days, list(charts.daily)
    totals = [sum((charts.daily[a][i] for a in agents), Decimal(0)) for i in range(len(days))]
    top = float(max(totals)) or 1.0
    left, height, plot_h = 56, 240, 200
    bar_w = (WIDTH - left - 8) / len(days)
    out = [f"<svg class='chart' data-chart='daily' width='{WIDTH}' height='{height}' role='img' "
           "aria-label='spend per day by agent'>"]
    out += _y_axis(left, plot_h, top)
    flagged = {d.day for d in report.anomalies.days}
    for i, day in enumerate(days):
        y = plot_h + 10.0
        for j, agent in enumerate(agents):
            value = charts.daily[agent][i]
            if not value:
                continue
            h = float(value) / top * plot_h
            y -= h
            out.append(f"<rect class='mark' x='{left + i * bar_w:.1f}' y='{y:.1f}' width='{max(bar_w - 1, 0.5):.1f}' "
                       f"height='{h:.1f}' fill='{PALETTE[j % len(PALETTE)]}'><title>{day} {escape(agent)}: "
                       f"{fmt_usd(value)}</title></rect>")
        if day in flagged:
            x = left + (i + 0.5) * bar_w
            out.append(f"<path d='M{x - 4:.1f},{y - 8:.1f} L{x + 4:.1f},{y - 8:.1f} L{x:.1f},{y - 2:.1f} Z' "
                       f"fill='#d62728'><title>{day}: anomalous day, {fmt_usd(totals[i])}</title></path>")
    for i in sorted({0, len(days) // 2, len(days) - 1}):
        out.append(f"<text x='{left + (i + 0.5) * bar_w:.1f}' y='{plot_h + 26}' text-anchor='middle'>{days[i]}</text>")
    out.append("</svg>")
    return "".join(out) + _legend(agents)


def _y_axis(left: int, plot_h: int, top: float) -> list[str]:
    out = []
    for k in range(5):
        y = 10 + plot_h - plot_h * k / 4
        out.append(f"<line x1='{left}' x2='{WIDTH - 8}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
        out.append(f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>${top * k / 4:,.2f}</text>")
    return out


def _bars(name: str, rows: Sequence[tuple[str, Decimal, str]]) -> str:
    """Horizontal bars, one row each: label, a bar to scale, and the exact figure."""
    if not rows:
        return "<p class='muted'>Nothing to show.</p>"
    top = float(max(v for _, v, _ in rows)) or 1.0
    label_w, row_h = 150, 22
    bar_max = WIDTH - label_w - 340  # room for the figure after the longest bar
    out = [f"<svg class='chart' data-chart='{escape(name)}' width='{WIDTH}' height='{row_h * len(rows) + 6}' "
           f"role='img' aria-label='{escape(name)}'>"]
    for i, (label, value, note) in enumerate(rows):
        y = 3 + i * row_h
        w = max(float(value) / top * bar_max, 1.0)
        out.append(f"<text x='{label_w - 6}' y='{y + 14}' text-anchor='end'>{escape(label[:24])}</text>")
        out.append(f"<rect class='mark' x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' "
                   f"fill='{PALETTE[i % len(PALETTE)]}'><title>{escape(label)}: {escape(note)}</title></rect>")
        out.append(f"<text x='{label_w + w + 6:.1f}' y='{y + 14}'>{escape(note)}</text>")
    out.append("</svg>")
    return "".join(out)


def _savings_chart(report: Report) -> str:
    s = report.summary
    share = f" ({100 * s.savings / s.baseline:.1f}% saved)" if s.baseline else ""
    return _bars("savings", [("spent", s.cost, fmt_usd(s.cost)),
                             ("all-frontier baseline", s.baseline, fmt_usd(s.baseline) + share)])


def _outcome_chart(report: Report) -> str:
    # Per agent from the spend by agent: everything an agent spent over its successful, priced tasks.
    by_agent = {d.agent: d for d in report.distributions}
    rows = []
    for spend in sorted(report.agent_spend, key=lambda x: x.key or ""):
        cps = spend.cost_per_success
        if cps is not None and spend.key is not None:
            note = f"{fmt_usd(cps)} · {spend.priced_succeeded:,} of {by_agent[spend.key].tasks:,} tasks succeeded"
            rows.append((spend.key, cps, note))
    return _bars("outcome", rows)


def _histogram(h: Histogram, index: int) -> str:
    """One agent's cost histogram on a log axis, with its median and the 3x-median anomaly line."""
    height, plot_h, left = 120, 80, 56
    plot_w = WIDTH - left - 8
    top = max(h.counts) or 1
    lo, hi = float(h.edges[0]), float(h.edges[-1])

    def x_of(usd: float) -> float:
        usd = min(max(usd, lo), hi)
        return left + (math.log10(usd) - math.log10(lo)) / ((math.log10(hi) - math.log10(lo)) or 1) * plot_w

    out = [f"<svg class='chart' data-chart='hist-{escape(h.agent)}' width='{WIDTH}' height='{height}' role='img' "
           f"aria-label='cost per task of {escape(h.agent)}'>",
           f"<text x='{left}' y='12' font-weight='bold'>{escape(h.agent)} · {h.tasks:,} priced tasks · median "
           f"{fmt_usd(h.median)}</text>"]
    bin_w = plot_w / len(h.counts)
    for i, n in enumerate(h.counts):
        if not n:
            continue
        bh = max(n / top * plot_h, 1.0)
        out.append(f"<rect class='mark' x='{left + i * bin_w:.1f}' y='{18 + plot_h - bh:.1f}' "
                   f"width='{max(bin_w - 1, 0.5):.1f}' height='{bh:.1f}' fill='{PALETTE[index % len(PALETTE)]}'>"
                   f"<title>{n:,} tasks between {fmt_usd(h.edges[i])} and {fmt_usd(h.edges[i + 1])}</title></rect>")
    for usd, style, label in ((h.median, "stroke='#555'", "median"),
                              (3 * h.median, "stroke='#d62728' stroke-dasharray='4 3'", "3x median")):
        if not usd:
            continue
        x = x_of(float(usd))
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='16' y2='{18 + plot_h}' {style} stroke-width='1.5'>"
                   f"<title>{label}: {fmt_usd(usd)}</title></line>")
    out.append(f"<text x='{left}' y='{height - 6}'>{fmt_usd(h.edges[0])}</text>")
    out.append(f"<text x='{WIDTH - 8}' y='{height - 6}' text-anchor='end'>{fmt_usd(h.edges[-1])}</text>")
    out.append("</svg>")
    return "".join(out)


def _quality_chart(points: Sequence[QualityPoint]) -> str:
    """Success rate (y) against cost per task (x, log scale), one point per tier, joined cheapest to dearest."""
    height, plot_h, left, plot_w = 260, 200, 56, WIDTH - 56 - 120
    costs = [float(p.cost_per_task) or 1e-12 for p in points]
    lo, hi = min(costs), max(costs)
    lo, hi = (lo / 2, hi * 2) if lo == hi else (lo, hi)

    def x_of(cost: float) -> float:
        return left + (math.log10(cost) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_w

    def y_of(rate: float) -> float:
        return 10 + plot_h * (1 - rate)

    out = [f"<svg class='chart' data-chart='quality' width='{WIDTH}' height='{height}' role='img' "
           "aria-label='success rate against cost per task, per tier'>"]
    for k in range(5):
        y = y_of(k / 4)
        out.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
        out.append(f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>{25 * k}%</text>")
    xy = [(x_of(c), y_of(p.success_rate)) for c, p in zip(costs, points, strict=True)]
    out.append("<polyline fill='none' stroke='#999' points='" + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + "'/>")
    for i, (p, (x, y)) in enumerate(zip(points, xy, strict=True)):
        note = f"{p.tier}: {100 * p.success_rate:.1f}% of {p.tasks:,} at {fmt_usd(p.cost_per_task)} a task"
        out.append(f"<circle class='mark' cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{PALETTE[i % len(PALETTE)]}'>"
                   f"<title>{escape(note)}</title></circle>")
        out.append(f"<text x='{x + 8:.1f}' y='{y - 6:.1f}'>{escape(p.tier)}</text>")
    for p, anchor in ((points[0], "start"), (points[-1], "end")):  # the axis ends: the cheapest and dearest tiers
        x = x_of(float(p.cost_per_task) or 1e-12)
        label = f"{fmt_usd(p.cost_per_task)} a task"
        out.append(f"<text x='{x:.1f}' y='{height - 24}' text-anchor='{anchor}'>{label}</text>")
    out.append("</svg>")
    return "".join(out)


def _percentile_table(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{escape(d.agent)}</td><td class='n'>{d.tasks:,}</td><td class='n'>{fmt_usd(d.p50)}</td>"
        f"<td class='n'>{fmt_usd(d.p90)}</td><td class='n'>{fmt_usd(d.p99)}</td>"
        f"<td class='n'>{fmt_usd(d.max)}</td></tr>"
        for d in report.distributions
    )
    return ("<table><tr><th>agent</th><th>tasks</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>"
            f"{rows}</table>")


def _anomalies(report: Report) -> str:
    found = report.anomalies
    out = ["<h2>Anomalies</h2>"]
    if not (found.tasks or found.days):
        return out[0] + "<p>None: no task over 3x its agent's median, no day over mean + 2σ of the 30 before.</p>"
    if found.tasks:
        more = (f" (the costliest {len(found.tasks)} of {found.task_count:,})"
                if found.task_count > len(found.tasks) else "")
        out.append(f"<p>Tasks over 3x their agent's median{more}:</p><table><tr><th>task</th><th>when (UTC)</th>"
                   "<th>agent</th><th>tenant</th><th>cost</th><th>agent median</th></tr>")
        out += [f"<tr><td>{escape(a.task_id)}</td><td>{_day(a.created_at)}</td><td>{escape(a.agent)}</td>"
                f"<td>{escape(a.tenant)}</td><td class='n'>{fmt_usd(a.cost)}</td>"
                f"<td class='n'>{fmt_usd(a.median)}</td></tr>" for a in found.tasks]
        out.append("</table>")
    if found.days:
        out.append("<p>Days over the mean + 2σ of the 30 before:</p><table><tr><th>day (UTC)</th><th>cost</th>"
                   "<th>mean</th><th>threshold</th></tr>")
        out += [f"<tr><td>{d.day}</td><td class='n'>{fmt_usd(d.cost)}</td><td class='n'>${d.mean:,.2f}</td>"
                f"<td class='n'>${d.threshold:,.2f}</td></tr>" for d in found.days]
        out.append("</table>")
    return "".join(out)


def _shadow(days: Sequence[ShadowDay]) -> str:
    """The router's quality measured by shadow evaluation, per UTC day (the terminal report's table)."""
    if not days:
        return ""
    out = ["<h2>Router quality measured by shadow evaluation</h2><p class='muted'>A sample of live subtasks re-run "
           "on the reference tier: the share whose live answer matched the reference's. Unscored: no verdict (the "
           "shadow budget ran out, a failure, or the judge answered neither yes nor no).</p>",
           "<table data-table='shadow'><tr><th>day (UTC)</th><th>shadowed</th><th>matched</th><th>quality</th>"
           "<th>unscored</th><th>eval cost</th></tr>"]
    out += [f"<tr><td>{d.day}</td><td class='n'>{d.scored:,}</td><td class='n'>{d.matched:,}</td>"
            f"<td class='n'>{'-' if d.quality is None else f'{100 * d.quality:.1f}%'}</td>"
            f"<td class='n'>{d.unscored:,}</td><td class='n'>{fmt_usd(d.cost)}</td></tr>" for d in days]
    return "".join(out) + "</table>"


def _economics(report: Report) -> str:
    """Unit economics per agent (flagged rows in red) and the surges after a change of model or version."""
    out: list[str] = []
    if report.economics is not None:
        out += _economics_rows(report.economics)
    if report.changes is None:
        return "".join(out)
    out.append("<h2>Surges after a change of model or version</h2>")
    surged = [c for c in report.changes if c.surged]
    if not surged:
        return "".join(out) + (f"<p>None: {len(report.changes)} change(s), none raised cost per task past its "
                               "factor.</p>")
    out.append("<table><tr><th>agent</th><th>from (UTC)</th><th>change</th><th>before</th><th>after</th>"
               "<th>ratio</th></tr>")
    out += [f"<tr><td>{escape(c.agent)}</td><td>{_day(c.at)}</td><td>{escape(c.describe())}</td>"
            f"<td class='n'>{fmt_usd(c.before)}</td><td class='n'>{fmt_usd(c.after)}</td>"
            f"<td class='n'>{c.ratio:.2f}x</td></tr>" for c in surged]
    return "".join(out) + "</table>"


def _raises(report: Report) -> str:
    """The temporary raises of agents' task caps in force during the report's period, and why."""
    if not report.raises:
        return ""
    out = ["<h2>Temporary cap raises</h2><p class='muted'>An agent's task caps times the factor, from a surge "
           "alert, while someone looks into the change.</p>",
           "<table><tr><th>agent</th><th>factor</th><th>from (UTC)</th><th>until (UTC)</th><th>why</th></tr>"]
    out += [f"<tr><td>{escape(r.agent)}</td><td class='n'>{r.factor}x</td><td>{_day(r.starts_at)}</td>"
            f"<td>{_day(r.ends_at)}</td><td>{escape(r.reason)}</td></tr>" for r in report.raises]
    return "".join(out) + "</table>"


def _economics_rows(rows: list[AgentEconomics]) -> list[str]:
    out = ["<h2>Unit economics, by agent</h2><p class='muted'>ROI = (human cost - cost per success) / cost per "
           "success; token efficiency = output tokens / all tokens. Red: an outcome costs more than a human's.</p>",
           "<table><tr><th>agent</th><th>tasks</th><th>succeeded</th><th>cost per success</th><th>human cost</th>"
           "<th>ROI</th><th>output / all tokens</th></tr>"]
    for e in rows:
        style = " style='color:#c0392b'" if e.over_human_cost else ""
        out.append(
            f"<tr{style}><td>{escape(e.agent)}</td><td class='n'>{e.tasks:,}</td><td class='n'>{e.succeeded:,}</td>"
            f"<td class='n'>{fmt_usd(e.cost_per_success) if e.cost_per_success is not None else '-'}</td>"
            f"<td class='n'>{fmt_usd(e.human_cost) if e.human_cost is not None else '-'}</td>"
            f"<td class='n'>{'-' if e.roi is None else f'{100 * e.roi:,.0f}%'}</td>"
            f"<td class='n'>{'-' if e.token_efficiency is None else f'{100 * e.token_efficiency:.1f}%'}</td></tr>")
    out.append("</table>")
    return out
