"""``paymaster report --html``: one offline page whose every chart renders in headless Chromium.

The Chromium test keeps its screenshot (and the page) as artifacts in $PAYMASTER_ARTIFACTS, by default
bench/out/ (git-ignored): report-chromium.png and report-chromium.html.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster.cli import app
from paymaster.ledger import TaskRecord
from paymaster.ledger._queries import Scope
from paymaster.ledger._reader import Reader
from paymaster.ledger._shadows import shadow_agent
from paymaster.ledger._views import eval_points
from tests.finops_helpers import DAY1, add_task

runner = CliRunner()
ARTIFACTS = Path(os.environ.get("PAYMASTER_ARTIFACTS") or Path(__file__).resolve().parents[1] / "bench" / "out")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def report_html(ledger: Ledger, ledger_path: Path, tmp_path: Path) -> str:
    # Ten days of three agents on two tiers, one expensive day, one hostile tenant name.
    for day in range(10):
        for i, agent in enumerate(("triage", "refund", "research")):
            usd = f"{0.10 * (i + 1) * (8 if day == 9 else 1):.2f}"
            add_task(ledger, f"{agent}-{day}", agent, usd, tags={"team": ["support", "science"][day % 2]},
                     at=DAY1 + day * 86_400, tenant=EVIL if day == 3 else "acme")
    ledger.open_task(TaskRecord(id="deep", agent="research", agent_version="1", tenant="acme", created_at=DAY1))
    ledger.record_step({"task_id": "deep", "kind": "execute", "tier": "deep", "model": "gpt-4o", "provider": "openai",
                        "cost_picos": 10**12, "baseline_picos": 10**12, "created_at": DAY1})
    ledger.finish_task("deep", status="succeeded", stop_reason=None, output="ok", success=True)
    # Eval records: the same items on two tiers (tenant eval, tagged with the tier).
    for i in range(4):
        add_task(ledger, f"e-fast-{i}", "grader", "0.01", tenant="eval", tags={"tier": "fast"}, success=i < 2)
        add_task(ledger, f"e-deep-{i}", "grader", "0.20", tenant="eval", tags={"tier": "deep"}, success=i < 3)
    # Shadow evaluation of triage on two days: 3 of 4 matched the reference, then 4 of 4 and one without a verdict.
    for i, (day, agreed) in enumerate([(0, True), (0, False), (0, True), (0, True),
                                       (1, True), (1, True), (1, None), (1, True), (1, True)]):
        add_shadow(ledger, f"shadow-{i}", f"triage-{day}", agreed, at=DAY1 + day * 86_400 + 60)
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "-l", str(ledger_path), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output.replace("\n", "")
    return out.read_text(encoding="utf-8")


def add_shadow(ledger: Ledger, task_id: str, live: str, agreed: bool | None, *, at: float) -> None:
    """A finished shadow run of ``live``'s subtask s1 (fast checked against deep), as the runtime records one."""
    verdict = {"of": live, "subtask": "s1", "routed": "fast", "reference": "deep", "agreed": agreed,
               "scored_by": "judge on fast"}
    ledger.open_task(TaskRecord(id=task_id, agent=shadow_agent("triage"), agent_version="1", tenant="acme",
                                created_at=at, parent_id=live))
    ledger.record_step({"task_id": task_id, "kind": "eval", "tier": "deep", "model": "gpt-4o", "provider": "openai",
                        "cost_picos": 2 * 10**10, "baseline_picos": 2 * 10**10, "created_at": at})
    ledger.update_task(task_id, plan={"shadow": verdict})
    ledger.finish_task(task_id, status="failed" if agreed is None else "succeeded", stop_reason=None, output=None,
                       success=agreed)


SHADOW_ROWS = [("2026-11-02", "4", "3", "75.0%", "0", "$0.080000"), ("2026-11-03", "4", "4", "100.0%", "1",
                                                                       "$0.100000")]
EXPECTED_CHARTS = {"daily", "savings", "tiers", "outcome", "hist-triage", "hist-refund", "hist-research",
                   "hist-grader", "showback-team", "showback-tier", "top", "quality"}


def test_the_page_is_self_contained_and_escapes_ledger_text(report_html: str) -> None:
    assert set(re.findall(r"data-chart='([^']+)'", report_html)) == EXPECTED_CHARTS
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", report_html)  # nothing fetched, no CDN
    assert "<link" not in report_html and "@import" not in report_html
    assert EVIL not in report_html and "&lt;script&gt;alert(1)&lt;/script&gt;" in report_html
    assert "fast: 50.0% of 4 at $0.010000 a task" in report_html and "deep: 75.0% of 4" in report_html
    assert "2026-11-11</td><td class='n'>$4.800000" in report_html  # the planted day, exact, among the anomalies
    shadow = re.search(r"<table data-table='shadow'>(.*?)</table>", report_html)
    assert shadow is not None and "Router quality measured by shadow evaluation" in report_html
    assert _cells(shadow[1])[1:] == SHADOW_ROWS  # per UTC day: shadowed, matched, quality, unscored, eval cost


def _cells(table: str) -> list[tuple[str, ...]]:
    return [tuple(re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table)]


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary is not None
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
def test_every_chart_renders_in_headless_chromium_without_errors(report_html: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / "report-chromium.html"
    page.write_text(report_html, encoding="utf-8")
    dom = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(), profile=tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Console output of the page (errors, uncaught exceptions, any log) shows up as CONSOLE lines.
    assert [line for line in dom.stderr.splitlines() if ":CONSOLE" in line] == []
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None
    assert "data-errors" not in body[1]
    n = len(EXPECTED_CHARTS)
    assert f'data-charts="{n}/{n}"' in body[1]  # the page's own check: every chart laid out with marks in it
    rendered = dict(re.findall(r'data-chart="([^"]+)"[^>]*data-rendered="(\d+)"', dom.stdout))
    assert set(rendered) == EXPECTED_CHARTS and all(int(v) > 0 for v in rendered.values())
    # The shadow-quality table laid out in the browser with its two days, exactly as the ledger says.
    table = re.search(r'<table data-table="shadow" data-rendered="(\d+)">(.*?)</table>', dom.stdout, re.S)
    assert table is not None and table[1] == str(len(SHADOW_ROWS))
    assert _cells(table[2])[1:] == SHADOW_ROWS
    shot = ARTIFACTS / "report-chromium.png"
    shot.unlink(missing_ok=True)
    taken = _chromium(f"--screenshot={shot}", "--window-size=900,2600", "--hide-scrollbars", page.as_uri(),
                      profile=tmp_path / "p2")
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    print(f"screenshot: {shot}")


def test_eval_records_give_each_tier_its_success_rate_and_cost(ledger: Ledger) -> None:
    for i in range(4):
        add_task(ledger, f"f{i}", "grader", "0.01", tenant="eval", tags={"tier": "fast"}, success=i == 0)
        add_task(ledger, f"d{i}", "grader", "0.30", tenant="eval", tags={"tier": "deep"})
    add_task(ledger, "live", "grader", "9.00", tags={"tier": "deep"})  # not an eval record: another tenant
    with Reader(ledger) as reader:
        points = eval_points(reader, Scope())
        assert eval_points(reader, Scope(tenant="acme")) == []
    assert [(p.tier, p.tasks, p.succeeded, p.cost_per_task) for p in points] == [
        ("fast", 4, 1, Decimal("0.01")), ("deep", 4, 4, Decimal("0.3"))]
