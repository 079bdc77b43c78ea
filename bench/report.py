"""Results -> JSON under bench/results/ and the generated block of docs/BENCHMARKS.md.

Only the text between the two markers is rewritten, so the hand-written sections of the document
(method, profile, the training engineer's "Training" section) survive every run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from models.cpu import cpu_flags, isa_features

BEGIN = "<!-- bench:results:begin (written by `make bench`; edit bench/report.py, not this block) -->"
END = "<!-- bench:results:end -->"
PACKAGES = ("onnxruntime-gpu", "onnxruntime", "tokenizers", "kafka-python", "numpy", "torch", "transformers")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(gpu: str | None) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu_model(),
        # which int8/fp32 kernels the figures below could use: VNNI makes int8 GEMM several times faster
        "isa": list(isa_features(cpu_flags())),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "git_commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def _clean(obj: Any) -> Any:
    """Drop private keys (arrays kept for the agreement check) before writing JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_json(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"bench-{stamp}{'-quick' if results.get('quick') else ''}.json"
    text = json.dumps(_clean(results), indent=2, sort_keys=False, default=float)
    path.write_text(text + "\n", encoding="utf-8")
    (out_dir / ("latest-quick.json" if results.get("quick") else "latest.json")).write_text(text + "\n")
    return path


def isa_text(isa: Any) -> str:
    """The features a run recorded, joined ("AVX2 + AVX-512 + VNNI"), or a note that none were read."""
    return " + ".join(isa) if isa else "ISA flags unknown"


def _f(x: Any, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _mib(x: Any) -> str:
    return "–" if not x else f"{x / 2**20:,.0f} MiB"


def markdown(results: dict[str, Any]) -> str:
    m, c = results["machine"], results["corpus"]
    rows = results["rows"]
    base = next((r["msgs_per_s"] for r in rows if r.get("baseline") == "A-best"), None)
    score_int8 = next(
        (r["msgs_per_s"] for r in rows if r["kind"] == "scoring" and r.get("variant") == results["deployed"]),
        None,
    )
    tok = c["tokens"]
    lines = [
        BEGIN,
        "",
        f"Run of {results['finished_at']} UTC{' (QUICK)' if results.get('quick') else ''}: "
        f"`{results['command']}` (commit {m['git_commit'] or '?'}).",
        "",
        f"- Machine: {m['cpu']} ({isa_text(m.get('isa'))}), {m['cores']} cores{', GPU ' + m['gpu'] if m.get('gpu') else ', no GPU'}; "
        f"{m['os']}, Python {m['python']}; load average at start {m['loadavg_start'][0]:.2f}, "
        f"at end {results['loadavg_end'][0]:.2f} (shared machine).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"- Model: `{results['model']['path']}` (version {results['model']['version']}, base "
        f"`{results['model']['base_model']}`); PyTorch weights `{results['model'].get('checkpoint') or '–'}`.",
        f"- Corpus: N = {c['messages']:,} messages (seed {results['seed']}), {c['headlines_only']:,} headlines and "
        f"{c['articles']:,} short articles (headline + 1–3 sentences), {c['distinct_texts']:,} distinct texts; "
        f"tokens per text p50 {tok['p50']:.0f}, p95 {tok['p95']:.0f}, max {tok['max']} "
        f"(headlines p50 {c['tokens_headlines'].get('p50', 0):.0f}, articles p50 "
        f"{c['tokens_articles'].get('p50', 0):.0f}).",
        "",
        "| what | settings | msgs/s | × baseline A (best) | notes |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        # the pipeline rows run other weights: a ratio to baseline A would compare two models
        same_model = r["kind"] != "e2e-pipeline"
        ratio = f"{r['msgs_per_s'] / base:.1f}×" if base and r.get("msgs_per_s") and same_model else "–"
        lines.append(
            f"| {r['name']} | {r.get('settings', '')} | {_f(r.get('msgs_per_s'))} | {ratio} | {r.get('notes', '')} |"
        )
    e2e = next((r for r in rows if r["kind"] == "e2e"), None)
    lat = results.get("latency")
    lines.append("")
    if e2e:
        share = f"{e2e['msgs_per_s'] / score_int8:.0%}" if score_int8 else "–"
        lines.append(
            f"- End to end vs its own scoring function alone ({results['deployed']}): **{share}**; "
            f"daemon peak RSS **{_mib(e2e.get('peak_rss_bytes'))}**; torch loaded in the daemon: "
            f"**{'yes' if e2e.get('torch_loaded') else 'no'}**."
        )
    pipe = [r for r in rows if r["kind"] == "e2e-pipeline"]
    if pipe:
        one = next((r for r in pipe if r.get("daemons", 1) == 1), pipe[0])
        more = ", ".join(f"{r['daemons']} processes {r['msgs_per_s']:,.0f}" for r in pipe if r is not one)
        vs = (
            f"; the deployed model's end to end is **{e2e['msgs_per_s'] / one['msgs_per_s']:.0%}** of it"
            if e2e
            else ""
        )
        lines.append(
            f"- The daemon's own ceiling (end to end with a tiny model, whose scoring costs next to nothing): "
            f"**{one['msgs_per_s']:,.0f} msgs/s** with one process"
            + (f" ({more})" if more else "")
            + f"{vs}."
        )
    if lat:
        lines.append(
            f"- Latency at a fixed offered load of {_f(lat.get('offered_rate'))} msgs/s "
            f"({lat['scored']:,} messages, first {lat['warmup_excluded']} excluded as warm-up), ingest to "
            f"published: p50 **{lat['p50_ms']:.0f} ms**, p95 **{lat['p95_ms']:.0f} ms**, p99 **{lat['p99_ms']:.0f} ms** "
            f"(max {lat['max_ms']:.0f} ms); daemon peak RSS {_mib(lat.get('peak_rss_bytes'))}."
        )
    for name, agr in results.get("agreement", {}).items():
        lines.append(
            f"- Agreement with fp32 PyTorch (baseline B), {name}: topic **{agr['topic']:.2%}**, "
            f"sentiment **{agr['sentiment']:.2%}** (largest sentiment-probability difference {agr['max_abs_prob_diff']:.3f})."
        )
    ceil = results.get("ceiling")
    if ceil:
        bound = ceil["ceiling_msgs_per_s"]
        reach = (
            f"; finsent's scoring alone ({results['deployed']}) runs at **{score_int8 / bound:.0%}** of it"
            if score_int8
            else ""
        )
        vs_a = f" = **{bound / base:.1f}× baseline A (best)**" if base else ""
        layouts = ceil.get("gemm_gops_int8_by_runs") or {}
        by_runs = (
            "; int8 GOP/s by GEMMs run at once: " + ", ".join(f"{k}: {v:.0f}" for k, v in layouts.items())
            if len(layouts) > 1
            else ""
        )
        lines.append(
            f"- Ceiling (`bench/ceiling.py`): the model does {ceil['macs_per_token'] / 1e6:.1f} M multiply-adds "
            f"per token, {ceil['macs_per_message_mean'] / 1e6:.0f} M per message of this corpus; ONNX Runtime's "
            f"GEMM on the model's shapes ({ceil['gemm_rows']} rows) runs at {ceil['gemm_gflops_fp32']:.0f} GFLOP/s "
            f"fp32 and {ceil['gemm_gops_int8']:.0f} GOP/s int8 (int8/fp32 = {ceil['int8_over_fp32']:.2f}"
            f"{by_runs}). "
            f"No runtime using these kernels can score more than **{bound:,.0f} msgs/s** here{vs_a}{reach} "
            f"(CPU ISA: {isa_text(m.get('isa'))})."
        )
    prof = results.get("profile_daemon")
    if prof and prof.get("shares"):
        top = ", ".join(f"{k} {v:.1%}" for k, v in list(prof["shares"].items())[:5])
        lines.append(f"- Profile of the daemon (py-spy, busy samples of all threads): {top}.")
    prof = results.get("profile_pipeline")
    if prof and prof.get("shares"):
        top = ", ".join(f"{k} {v:.1%}" for k, v in list(prof["shares"].items())[:6])
        lines.append(
            f"- Profile of the daemon's own work (py-spy --gil on the tiny-model run: samples of the thread "
            f"holding the interpreter lock): {top}."
        )
    prof = results.get("profile_scoring")
    if prof:
        parts = ", ".join(f"{k} {v:.1%}" for k, v in prof["shares"].items())
        lines.append(f"- Profile of `Scorer.score` (cProfile): {parts}.")
    prof = results.get("profile_ops")
    if prof:
        ops = ", ".join(f"{k} {v:.1%}" for k, v in list(prof["op_shares"].items())[:8])
        parts = ", ".join(f"{k} {v:.1%}" for k, v in prof["shares_of_score"].items())
        lines.append(
            f"- ORT kernel time by op type ({prof['variant']}, ORT's profiler): {ops}. "
            f"`Scorer.score` under the same run: {parts}."
        )
    if results.get("sweeps"):
        for title, sweep in results["sweeps"].items():
            pts = ", ".join(f"{p['size']}: {p['msgs_per_s']:,.0f}" for p in sweep)
            lines.append(f"- Sweep, {title} (size: msgs/s): {pts}.")
    targets = results.get("targets")
    if targets:
        lines += ["", *render_targets(targets)]
    lines += ["", f"Raw figures: `{results.get('json', 'bench/results/latest.json')}`.", "", END]
    return "\n".join(lines)


def render_targets(targets: list[dict[str, Any]]) -> list[str]:
    """The targets table; `met` None is a target that does not apply on this machine."""
    lines = ["| target | figure | met? |", "| --- | --- | --- |"]
    for t in targets:
        met = "does not apply here" if t["met"] is None else "yes" if t["met"] else "**no**"
        lines.append(f"| {t['target']} | {t['figure']} | {met} |")
    return lines


def update_doc(doc: Path, block: str, skeleton: str) -> None:
    """Replace the generated block (or create the document from `skeleton`, which holds the markers)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else skeleton
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + "\n\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head + block + tail, encoding="utf-8")
