"""One evaluation window: ``evaluate`` and ``simulate --from`` count the same requests and give the same
figures; gap closed says what it averages; each policy has one colour in every plot."""

from __future__ import annotations

import datetime as dt
import json

import click
import numpy as np
import pytest
from click.testing import CliRunner
from rawlogs import make_records, write

from smartcache.catalog import load_config, open_store
from smartcache.submit.cli.simulate import commands
from smartcache.tasks.common.trace import make_trace, write_trace_csv
from smartcache.tasks.evaluate.summary import format_summary, summarize
from smartcache.tasks.evaluate.task import main as evaluate_main
from smartcache.tasks.simulate.core import Metrics, SimResult
from smartcache.tasks.simulate.grid import gap_closed, gap_rows
from smartcache.tasks.simulate.report import byte_hit_figure, format_table, policy_color
from smartcache.tasks.simulate.synth import synthetic_trace

DAY0 = dt.date(2026, 9, 1)
POLICIES = "lru,lfu,gdsf,arc,s3fifo,sieve,belady"
FIELDS = ("requests", "hits", "bytes_requested", "bytes_hit", "bytes_written", "byte_hit_ratio", "hit_ratio")


@pytest.fixture
def cli(tmp_path):
    group = click.Group("t")
    for c in commands:
        group.add_command(c)
    cfg = load_config(env={"SMARTCACHE_HOME": str(tmp_path / "home")})

    def run(*args):
        return CliRunner().invoke(group, [str(a) for a in args], obj=cfg)
    return run


def _simulated(cli, trace_csv, site, sizes, *extra) -> dict:
    res = cli("simulate", "--trace", trace_csv, "--site", site, "--cache-size", ",".join(f"{s}B" for s in sizes),
              "--policy", POLICIES, "--json", *extra)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    return {"window": data["window"],
            "rows": {(r["policy"], r["cache_size"]): r for r in data["results"] if r["site"] == site}}


def test_evaluate_and_simulate_from_give_the_same_figures(tmp_path, cli):
    raw = tmp_path / "raw"
    for k in range(10):
        day = DAY0 + dt.timedelta(days=k)
        write(raw, day, make_records(day, 700, seed=5, files=60))
    url = f"sqlite:///{tmp_path}/c.db"
    store = open_store(url, migrate=True)
    store.add_site("T2_IT_Pisa", 40 * 10**9)
    store.add_site("T2_US_UCSD", 25 * 10**9)
    store.close()
    out = tmp_path / "ev"
    rc = evaluate_main(["--catalog", url, "--raw", str(raw), "--out", str(out), "--start", "2026-09-07", "--end",
                        "2026-09-10", "--warmup-days", "4", "--policies", POLICIES, "--fractions", "0.05,0.2"])
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    window = data["summary"]["window"]
    assert window["from"] == "2026-09-07" and window["to"] == "2026-09-10"
    assert window["trace"] == str((out / "trace.csv").resolve()) and window["first_request"] == "2026-09-03"
    assert window["counted"] + window["warm_up"] == window["replayed"] and window["warm_up"] > 0
    rows = [r for r in data["results"] if r["site"] != "*"]
    by_site: dict[str, list[dict]] = {}
    for r in rows:
        by_site.setdefault(r["site"], []).append(r)
    assert len(by_site) >= 4 and {r["size_label"] for r in rows} == {"site", "5%", "20%"}
    compared = 0
    for site, mine in by_site.items():
        sim = _simulated(cli, out / "trace.csv", site, sorted({r["cache_size"] for r in mine}), "--from", "2026-09-07")
        for r in mine:
            s = sim["rows"][(r["policy"], r["cache_size"])]
            assert {f: s[f] for f in FIELDS} == {f: r[f] for f in FIELDS}, (site, r["policy"], r["size_label"])
            compared += 1
    assert compared == len(rows)
    # what made the two disagree before: without --from, simulate also counts the warm-up days (cold caches)
    pisa = next(r for r in rows if r["site"] == "T2_IT_Pisa" and r["policy"] == "lru" and r["size_label"] == "site")
    cold = _simulated(cli, out / "trace.csv", "T2_IT_Pisa", [pisa["cache_size"]])
    assert cold["window"]["from"] is None
    assert cold["rows"][("lru", pisa["cache_size"])]["requests"] > pisa["requests"]
    assert cold["rows"][("lru", pisa["cache_size"])]["byte_hit_ratio"] != pisa["byte_hit_ratio"]

    # a given --trace is replayed the same way: from its start, counted from --start
    rc = evaluate_main(["--catalog", url, "--trace", str(out / "trace.csv"), "--out", str(tmp_path / "ev2"),
                        "--start", "2026-09-07", "--policies", POLICIES, "--fractions", "0.05,0.2"])
    assert rc == 0
    again = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert again["summary"]["byte_hit_ratio"] == data["summary"]["byte_hit_ratio"]
    assert again["summary"]["window"]["counted"] == window["counted"]


def test_simulate_from_counts_from_utc_midnight_and_says_so(cli, tmp_path):
    day = 86400.0
    start = 1_790_208_000.0          # 2026-09-24 00:00 UTC
    ts = start + np.array([0.5, 0.7, 1.2, 1.9, 2.1, 2.4]) * day
    t = make_trace(ts, list("ABABAB"), [5, 5, 5, 5, 5, 5], sites="S")
    csv = write_trace_csv(t, tmp_path / "t.csv")
    res = cli("simulate", "--trace", csv, "--cache-size", "10B", "--policy", "lru", "--from", "2026-09-25", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    (row,) = [r for r in data["results"] if r["site"] == "S"]
    assert (row["requests"], row["hits"]) == (4, 4)               # 1.2 .. 2.4 days: all warm hits
    assert data["window"] == {**data["window"], "from": "2026-09-25", "counted": 4, "warm_up": 2, "replayed": 6}
    res = cli("simulate", "--trace", csv, "--cache-size", "10B", "--policy", "lru", "--from", "2026-09-25")
    assert res.output.strip().splitlines()[-1] == (
        "counted: 4 of 6 requests, from 2026-09-25 00:00 UTC to the end of the trace (2026-09-26); "
        "the 2 before only warm the caches")


@pytest.mark.parametrize("args, text", [
    (("--from", "2026-09"), "--from: not a day: '2026-09' (use YYYY-MM-DD"),
    (("--from", "2026-02-30"), "--from: not a day: '2026-02-30'"),
    (("--from", "2026-12-01"), "--from 2026-12-01: no requests on or after that day (the trace ends 2026-09-26)"),
    (("--from", "2026-09-25", "--warmup-days", "1"), "give --from or --warmup-days, not both"),
])
def test_simulate_from_user_errors(cli, tmp_path, args, text):
    t = make_trace([1_790_208_000.0, 1_790_208_000.0 + 2.5 * 86400], ["/a", "/b"], [1, 1], sites="S")
    csv = write_trace_csv(t, tmp_path / "t.csv")
    res = cli("simulate", "--trace", csv, "--cache-size", "10B", *args)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and text in res.output, res.output


# -- gap closed ------------------------------------------------------------------------------------
def _row(site, policy, bhr_milli, label="5%", size=10**12):
    return SimResult(site, policy, size, Metrics(10, 5, 1000, bhr_milli, 0), (), 0.0, {"size_label": label})


def test_gap_closed_says_what_it_averages():
    # A: LRU .20, S3FIFO .30, model .40, Belady .60 -> 50 % of LRU->Belady, 33 % of S3FIFO->Belady
    # B: LRU .50, ARC .55, model .52, Belady .60 -> 20 %, -60 % (the same bytes requested at both sites)
    results = [_row("A", "lru", 200), _row("A", "s3fifo", 300), _row("A", "model:m", 400), _row("A", "belady", 600),
               _row("B", "lru", 500), _row("B", "arc", 550), _row("B", "model:m", 520), _row("B", "belady", 600)]
    assert gap_closed(results, "model:m") == pytest.approx((0.5 + 0.2) / 2)
    best = {r["site"]: (r["low"], r["fraction"]) for r in gap_rows(results, "model:m", low="best")}
    assert best["A"][0] == "s3fifo" and best["A"][1] == pytest.approx(1 / 3)
    assert best["B"][0] == "arc" and best["B"][1] == pytest.approx(-0.6)
    s = summarize(results, ["lru", "s3fifo", "arc", "model:m", "belady"])
    assert s["gap_closed"]["model:m"] == pytest.approx(0.35) and s["gap_closed_rows"]["model:m"] == 2
    assert s["gap_closed_vs_best"]["model:m"] == pytest.approx((1 / 3 - 0.6) / 2)
    assert "unweighted mean over the site x size rows" in s["gap_closed_definition"]
    # per size label from the pooled figures (what the quickstart's table prints): the reader can recompute it
    pooled = s["byte_hit_ratio"]["5%"]
    assert pooled["lru"] == 0.35 and pooled["model:m"] == 0.46 and pooled["belady"] == 0.6
    g = s["gap_by_size"]["5%"]["model:m"]
    assert g["vs_lru"] == pytest.approx((0.46 - 0.35) / (0.6 - 0.35)) and g["best_heuristic"] == "arc"
    text = format_summary(s)
    header = text.splitlines()[0].split()
    assert header[:6] == ["size", "lru", "arc", "s3fifo", "model:m", "belady"]
    assert "44%" in text.splitlines()[1]
    assert "mean over the 2 site x size rows: 35% of the LRU-to-Belady gap" in text
    # simulate's table: each row's own share, and the model's margin over the best heuristic at that row
    table = format_table(results)
    line = next(x for x in table.splitlines() if x.startswith("A ") and "model:m" in x)
    assert line.split()[-4:] == ["50%", "+0.1000", "vs", "s3fifo"]
    assert "nothing averaged" in table


# -- one colour per policy -------------------------------------------------------------------------
def _colours(fig) -> dict[str, str]:
    from matplotlib.colors import to_hex
    return {line.get_label(): to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}


def test_each_policy_has_one_colour_in_every_plot():
    trace = synthetic_trace(1_500, 200, days=2, sites=("A", "B"), seed=1)
    from smartcache.tasks.simulate.grid import run_grid
    # the evaluation's order (models appended last) and simulate's (as typed) differ: the colours do not
    evaluation = run_grid(trace, "lru,gdsf,arc,s3fifo,belady", [10**11, 10**12])
    simulation = run_grid(trace, "belady,s3fifo,sieve,lru", [10**11, 10**12], sites=["A"])
    seen: dict[str, set[str]] = {}
    for fig in (byte_hit_figure(evaluation, "held-out byte hit ratio"), byte_hit_figure(simulation, "t.csv")):
        for policy, colour in _colours(fig).items():
            assert colour == policy_color(policy)
            seen.setdefault(policy, set()).add(colour)
    assert all(len(c) == 1 for c in seen.values()) and {"lru", "s3fifo", "belady"} <= set(seen)
    assert len({policy_color(p) for p in ("lru", "lfu", "gdsf", "arc", "s3fifo", "sieve", "belady", "model")}) == 8
    assert policy_color("model:cachenet") == policy_color("model:cachenet:3")   # a model keeps its colour
