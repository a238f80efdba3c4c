#!/usr/bin/env python3
"""Merges the load generator's run files into OUT/<date>-<commit>.json with the machine's
description and the commit, checks the targets of the benchmark, and draws the plots (PNG):
throughput vs offered load, latency quantiles vs offered load, memory and CPU over the soak.
Called by bench/run.sh; prints the JSON file's path."""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys


def machine():
    m = {"nproc": os.cpu_count(), "kernel": platform.release(), "arch": platform.machine()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                m["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                m["mem_total_mb"] = int(line.split()[1]) // 1024
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                m["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    for name, cmd in (("mariadb", ["mariadb", "--version"]), ("librdkafka", ["pkg-config", "--modversion", "rdkafka"])):
        try:
            m[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return m


def slope_kb_per_min(ts, ys):
    pts = [(t, y) for t, y in zip(ts, ys) if y is not None and y >= 0]
    if len(pts) < 3:
        return 0.0
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    return 60.0 * sum((t - mt) * (y - my) for t, y in pts) / var if var else 0.0


def soak_memory(run):
    s = run["series"]
    ts, rss = s["t_s"], s["rss_kb"].get("orderflowd", [])
    warm = run["config"]["warmup_s"] + 30  # the first 30 s of the window fill the caches and pools
    pairs = [(t, r) for t, r in zip(ts, rss) if t >= warm and r >= 0]
    if not pairs:
        pairs = [(t, r) for t, r in zip(ts, rss) if r >= 0]
    half = [(t, r) for t, r in pairs if t >= pairs[0][0] + (pairs[-1][0] - pairs[0][0]) / 2]
    vals = [r for _, r in pairs]
    return {
        "rss_mb_max": max(rss) / 1024 if rss else None,
        "rss_mb_after_warmup": vals[0] / 1024 if vals else None,
        "rss_mb_last": vals[-1] / 1024 if vals else None,
        "rss_slope_kb_per_min_second_half": round(slope_kb_per_min([t for t, _ in half], [r for _, r in half]), 1),
        "rss_slope_kb_per_min": round(slope_kb_per_min([t for t, _ in pairs], vals), 1),
    }


def summarize(runs, knee):
    by = {r["label"]: r for r in runs}
    sweep = sorted((r for r in runs if r["label"].startswith("sweep-")), key=lambda r: r["config"]["rate"])
    s = {"knee_per_s": knee, "sweep": [
        {"offered": r["config"]["rate"], "intake_per_s": round(r["intake"]["throughput_per_s"], 1),
         "intake_p99_ms": r["intake"]["latency"]["p99_ms"], "e2e_per_s": round(r["e2e"]["throughput_per_s"], 1),
         "e2e_p99_ms": r["e2e"]["latency"]["p99_ms"],
         "e2e_from_send_p99_ms": r["e2e"].get("latency_from_send", {}).get("p99_ms"),
         "errors": r["errors"]["total"]} for r in sweep]}
    if "max" in by:
        m = by["max"]
        s["max"] = {"intake_per_s": round(m["intake"]["throughput_per_s"], 1),
                    "intake_latency": m["intake"]["latency"],
                    "e2e_per_s": round(m["e2e"]["throughput_per_s"], 1),
                    "e2e_window_per_s": round(m["e2e"]["throughput_window_per_s"], 1),
                    "e2e_latency": m["e2e"]["latency"],
                    "e2e_latency_from_send": m["e2e"].get("latency_from_send")}
    if "soak" in by:
        k = by["soak"]
        s["soak"] = {"rate": k["config"]["rate"], "duration_s": k["config"]["duration_s"],
                     "intake_per_s": round(k["intake"]["throughput_per_s"], 1),
                     "intake_latency": k["intake"]["latency"],
                     "e2e_per_s": round(k["e2e"]["throughput_per_s"], 1), "e2e_latency": k["e2e"]["latency"],
                     "e2e_latency_from_send": k["e2e"].get("latency_from_send"),
                     "e2e_stages": k["e2e"]["stages"], "watch": k["watch"], **soak_memory(k)}
        t = s["soak"]
        s["targets"] = {
            "intake >= 20000/s (max run)": s.get("max", {}).get("intake_per_s", 0) >= 20000,
            "intake p99 <= 10 ms at 70% of the knee": t["intake_latency"]["p99_ms"] <= 10,
            "e2e >= 10000/s sustained (knee)": knee >= 10000,
            "e2e p99 <= 250 ms at 70% of the knee": t["e2e_latency"]["p99_ms"] <= 250,
            "orderflowd RSS <= 64 MB through the soak": (t["rss_mb_max"] or 1e9) <= 64,
            # Growth is what the target forbids: memory given back (a negative slope) passes.
            "no RSS growth in the soak (second half < +64 KB/min)": t["rss_slope_kb_per_min_second_half"] < 64,
        }
    if "scarce" in by or "quick-scarce" in by:
        sc = by.get("scarce") or by.get("quick-scarce")
        s["scarce"] = {"rate": sc["config"]["rate"], "finals": sc["e2e"]["finals"],
                       "e2e_latency": sc["e2e"]["latency"]}
    s["errors_total"] = sum(r["errors"]["total"] for r in runs)
    s["orders_total"] = sum(r["intake"]["accepted"] for r in runs)
    return s


def plots(doc, out, stem):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = doc["runs"]
    sweep = sorted((r for r in runs if r["label"].startswith("sweep-")), key=lambda r: r["config"]["rate"])
    files = []

    def save(fig, kind):
        fig.tight_layout()
        f = os.path.join(out, f"{stem}-{kind}.png")
        fig.savefig(f, dpi=100)
        plt.close(fig)
        files.append(f)

    if sweep:
        x = [r["config"]["rate"] for r in sweep]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(x, x, ":", color="grey", label="offered")
        ax.plot(x, [r["intake"]["throughput_per_s"] for r in sweep], "o-", label="intake (202/s)")
        ax.plot(x, [r["e2e"]["throughput_per_s"] for r in sweep], "s-", label="end to end (final/s)")
        mx = next((r for r in runs if r["label"] == "max"), None)
        if mx:
            ax.axhline(mx["intake"]["throughput_per_s"], color="C0", ls="--", lw=0.8, label="intake, max run")
            ax.axhline(mx["e2e"]["throughput_per_s"], color="C1", ls="--", lw=0.8, label="end to end, max run")
        if doc["summary"]["knee_per_s"]:
            ax.axvline(doc["summary"]["knee_per_s"], color="red", lw=0.8, label="knee")
        ax.set_xlabel("offered load (orders/s)")
        ax.set_ylabel("throughput (orders/s)")
        ax.set_title("Throughput vs offered load")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "throughput")

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
        for q, mk in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-"), ("p999_ms", "v-")):
            a1.plot(x, [max(r["intake"]["latency"][q], 0.01) for r in sweep], mk, label=q[:-3])
            a2.plot(x, [max(r["e2e"]["latency"][q], 0.01) for r in sweep], mk, label=q[:-3] + " from the 202")
        for q, mk in (("p50_ms", "o:"), ("p99_ms", "^:")):
            a2.plot(x, [max(r["e2e"].get("latency_from_send", {}).get(q, 0), 0.01) for r in sweep], mk,
                    color="grey", label=q[:-3] + " from the send")
        a1.axhline(10, color="red", lw=0.8, ls="--", label="target p99")
        a2.axhline(250, color="red", lw=0.8, ls="--", label="target p99")
        for a, t in ((a1, "Intake latency (to the 202; from the intended send)"),
                     (a2, "End-to-end latency (202 to final state)")):
            a.set_yscale("log")
            a.set_xlabel("offered load (orders/s)")
            a.set_ylabel("ms")
            a.set_title(t, fontsize=10)
            a.grid(alpha=0.3, which="both")
            a.legend(fontsize=8)
        save(fig, "latency")

    soak = next((r for r in runs if r["label"] == "soak"), None)
    if soak:
        s = soak["series"]
        t = s["t_s"]
        fig, a1 = plt.subplots(figsize=(8, 4.5))
        a1.plot(t, [v / 1024 if v >= 0 else None for v in s["rss_kb"]["orderflowd"]], color="C0",
                label="orderflowd RSS")
        a1.axhline(64, color="red", lw=0.8, ls="--", label="target 64 MB")
        a1.set_xlabel("time (s)")
        a1.set_ylabel("RSS (MB)")
        a1.set_ylim(bottom=0)
        a2 = a1.twinx()
        a2.plot(t, s["cpu_pct"]["orderflowd"], color="C1", lw=0.6, alpha=0.7, label="orderflowd CPU %")
        a2.plot(t, s["machine_busy_pct"], color="C2", lw=0.6, alpha=0.7, label="machine busy %")
        a2.set_ylabel("CPU (%; 100 = one core; machine: % of all)")
        a2.set_ylim(bottom=0)
        h1, l1 = a1.get_legend_handles_labels()
        h2, l2 = a2.get_legend_handles_labels()
        a1.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
        a1.set_title(f"Soak at {soak['config']['rate']:.0f} orders/s (70 % of the knee)")
        a1.grid(alpha=0.3)
        save(fig, "soak")
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--dirty", type=int, default=0)
    ap.add_argument("--mode", default="standard")
    ap.add_argument("--knee", type=float, default=0)
    ap.add_argument("--soak", type=float, default=0)
    ap.add_argument("--checker")
    ap.add_argument("--checker-rc", type=int, default=0)
    ap.add_argument("--dead-letters", type=int, default=0)
    ap.add_argument("--log-errors", type=int, default=0)
    ap.add_argument("--host-config")
    ap.add_argument("--plots", dest="plots", action="store_true", default=True)
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    runs = [json.load(open(f)) for f in a.runs]
    now = datetime.datetime.now(datetime.timezone.utc)
    stem = f"{now:%Y%m%d-%H%M%S}-{a.commit[:10]}" + ("-quick" if a.mode == "quick" else "")
    doc = {
        "date": now.isoformat(timespec="seconds"),
        "commit": a.commit,
        "uncommitted_changes": a.dirty,
        "mode": a.mode,
        "machine": machine(),
        "host_config": open(a.host_config).read() if a.host_config else None,
        "checker": {"exit_status": a.checker_rc,
                    "output": open(a.checker).read() if a.checker and os.path.exists(a.checker) else None},
        "dead_letters": a.dead_letters,
        "daemon_log_errors": a.log_errors,
        "summary": summarize(runs, a.knee),
        "runs": runs,
    }
    if a.plots:
        try:
            doc["plots"] = [os.path.basename(f) for f in plots(doc, a.out, stem)]
        except ImportError as e:
            print(f"report.py: no plots ({e}); install python3-matplotlib", file=sys.stderr)
    path = os.path.join(a.out, f"{stem}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(path)


if __name__ == "__main__":
    main()
