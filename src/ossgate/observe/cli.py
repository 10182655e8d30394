"""`ossgate traces list|show|export|stats|prune`: read the trace store from the command line.

The store is the one the server writes (`OSSGATE_OBSERVE_STORE_URL`, default the SQLite file in the
data dir); `--store URL` points elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ossgate.errors import OssgateError
from ossgate.observe.settings import ObserveSettings
from ossgate.observe.store import TraceFilter, TraceStore
from ossgate.observe.timespec import parse_time_ms

app = typer.Typer(help="Request traces: list, inspect, export, cost statistics, retention.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[str | None, typer.Option("--store", help="Trace store URL (default: OSSGATE_OBSERVE_STORE_URL "
                                                                "or the SQLite file in the data dir).")]
Since = Annotated[str | None, typer.Option(help="From: 24h / 7d ago, epoch seconds or ISO 8601.")]
Until = Annotated[str | None, typer.Option(help="Until (exclusive), same forms as --since.")]
Model = Annotated[str | None, typer.Option(help="Only this model.")]
Status = Annotated[str | None, typer.Option(help="ok | error")]
Key = Annotated[str | None, typer.Option("--key", help="Only this API key id.")]
Tenant = Annotated[str | None, typer.Option(help="Only this tenant.")]
Session = Annotated[str | None, typer.Option(help="Only this session id.")]
Search = Annotated[str | None, typer.Option("--search", "-q", help="Search prompt/response text, trace or session id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextlib.contextmanager
def _store(url: str | None):
    """Open the store; an OssgateError anywhere inside becomes one line on stderr and exit code 1."""
    store = None
    try:
        store = TraceStore(url or ObserveSettings().store_url)
        yield store
    except OssgateError as e:
        err.print(f"error: {e.message}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        if store is not None:
            store.close()


def _filter(since, until, model, status, key, tenant, session, search) -> TraceFilter:
    return TraceFilter(since_ms=parse_time_ms(since, param="since"), until_ms=parse_time_ms(until, param="until"),
                       model=model, status=status, key_id=key, tenant_id=tenant, session_id=session, q=search)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def _when(started_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_ms / 1000))


@app.command("list")
def list_traces(since: Since = "24h", until: Until = None, model: Model = None, status: Status = None, key: Key = None,
                tenant: Tenant = None, session: Session = None, search: Search = None,
                limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, store: StoreOpt = None,
                as_json: AsJson = False) -> None:
    """The newest traces matching the filters."""
    with _store(store) as s:
        rows = s.list(_filter(since, until, model, status, key, tenant, session, search), limit=limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} traces", show_lines=False)
    for col in ("time", "trace id", "model", "key", "status", "latency", "TTFT", "in/out tok", "cost $", "prompt"):
        # The trace id is what people copy into `traces show`: never shortened.
        table.add_column(col, overflow="fold" if col == "prompt" else "ellipsis", no_wrap=col != "prompt",
                         min_width=32 if col == "trace id" else None)
    for r in rows:
        status_text = r["status"] if r["status"] == "ok" else f"[red]{r['status']} {r['error_type'] or ''}[/red]"
        table.add_row(_when(r["started_ms"]), r["trace_id"], r["model"] or "–", r["key_id"] or "–", status_text,
                      _ms(r["latency_s"]), _ms(r["ttft_s"]), f"{r['input_tokens']}/{r['output_tokens']}",
                      f"{r['cost_tokens_usd'] + r['cost_hardware_usd']:.6f}", (r["preview"] or "")[:60])
    console.print(table)


@app.command()
def show(trace_id: str, store: StoreOpt = None, as_json: AsJson = False) -> None:
    """One trace: facts, span waterfall, content, scores."""
    with _store(store) as s:
        t = s.get(trace_id)
    if as_json:
        print(json.dumps(t, indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]trace {t['trace_id']}[/bold]  {_when(t['started_ms'])}  status {t['status']}"
                  f" {t['http_status'] or ''} {t['error_type'] or ''}")
    facts = [("model / backend", f"{t['model']} / {t['backend']}" + (f" (fallback from {t['fallback_from']})"
                                                                     if t["fallback"] else "")),
             ("tenant / key / user / session",
              f"{t['tenant_id']} / {t['key_id']} / {t['user_id']} / {t['session_id']}"),
             ("latency / TTFT / per token", f"{_ms(t['latency_s'])} / {_ms(t['ttft_s'])} / {_ms(t['tpot_s'])}"),
             ("tokens", f"in {t['input_tokens']} (cached {t['cached_tokens']}), out {t['output_tokens']}"
                        f" (reasoning {t['reasoning_tokens']})"),
             ("cost $", f"tokens {t['cost_tokens_usd']:.6f}, hardware {t['cost_hardware_usd']:.6f}")]
    for k, v in facts:
        console.print(f"  [dim]{k}:[/dim] {v}", highlight=False)
    total = max(t["latency_s"] * 1000, 0.001)
    depth: dict[str, int] = {}
    console.print("[bold]spans[/bold]")
    for sp in t["spans"]:
        depth[sp["span_id"]] = depth.get(sp["parent_id"], -1) + 1 if sp["parent_id"] else 0
        end = sp["end_ms"] if sp["end_ms"] is not None else sp["start_ms"]
        left, width = int(sp["start_ms"] / total * 40), max(1, int((end - sp["start_ms"]) / total * 40))
        name = ("  " * depth[sp["span_id"]] + sp["name"])[:24].ljust(24)
        bar = " " * left + ("x" if sp["status"] == "error" else "█") * min(width, 40 - left)
        console.print(f"  {name} |{bar.ljust(40)}| {end - sp['start_ms']:8.1f} ms", highlight=False, markup=False)
    for label in ("prompt", "reasoning", "response"):
        if t.get(label) is not None:
            text = t[label] if isinstance(t[label], str) else json.dumps(t[label], ensure_ascii=False)
            console.print(f"[bold]{label}[/bold]\n{text}", highlight=False, markup=False)
    for sc in t["scores"]:
        console.print(f"score {sc['name']} {sc['kind']} {sc['label'] or sc['value']} {sc['comment'] or ''}",
                      markup=False)


@app.command()
def export(out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file (default: stdout).")] = None,
           since: Since = None, until: Until = None, model: Model = None, status: Status = None, key: Key = None,
           tenant: Tenant = None, session: Session = None, search: Search = None, store: StoreOpt = None) -> None:
    """Every matching trace (with spans, content and scores) as JSON lines, oldest first."""
    with _store(store) as s:
        flt = _filter(since, until, model, status, key, tenant, session, search)
        if out is None:
            for record in s.iter_all(flt):
                record["scores"] = s.scores(record["trace_id"])
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        total = s.count(flt)
        with out.open("w", encoding="utf-8") as f, Progress(
                TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), console=err) as progress:
            task = progress.add_task("export", total=total)
            for record in s.iter_all(flt):
                record["scores"] = s.scores(record["trace_id"])
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                progress.advance(task)
        err.print(f"wrote {total} traces to {out}")


@app.command()
def stats(since: Since = "7d", until: Until = None, model: Model = None, key: Key = None, tenant: Tenant = None,
          by: Annotated[str, typer.Option(help="day | key | model")] = "day", store: StoreOpt = None,
          as_json: AsJson = False) -> None:
    """Requests, tokens and cost (list price and hardware) per day, key or model."""
    if by not in ("day", "key", "model"):
        err.print("error: --by must be day, key or model")
        raise typer.Exit(1)
    with _store(store) as s:
        flt = _filter(since, until, model, None, key, tenant, None, None)
        result = s.stats(flt, bucket_ms=86_400_000)
    rows: list[dict[str, Any]] = result[{"day": "by_day", "key": "by_key", "model": "by_model"}[by]]
    label = {"day": "day", "key": "key_id", "model": "model"}[by]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"cost per {by}")
    for col in (by, "requests", "errors", "input tok", "output tok", "token $", "hardware $"):
        table.add_column(col, justify="left" if col == by else "right")
    for r in rows:
        table.add_row(str(r[label]), str(r["requests"]), str(r["errors"]), str(r["input_tokens"]),
                      str(r["output_tokens"]), f"{r['cost_tokens_usd']:.6f}", f"{r['cost_hardware_usd']:.6f}")
    console.print(table)


@app.command()
def prune(days: Annotated[float | None, typer.Option(help="Keep this many days (default: settings).")] = None,
          rows: Annotated[int | None, typer.Option(help="Keep at most this many traces (default: settings).")] = None,
          store: StoreOpt = None) -> None:
    """Apply the retention policy now."""
    settings = ObserveSettings()
    with _store(store) as s:
        removed = s.prune(max_age_days=days if days is not None else settings.retention_days,
                          max_rows=rows if rows is not None else settings.retention_rows)
    console.print(f"removed {removed} traces")
