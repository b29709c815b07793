#!/usr/bin/env python3
"""The target ratios of an rwal-compare run (issue 3), from its RESULT lines.

usage: python3 benches/compare/ratios.py RESULTS.txt [MORE.txt ...]
       ... | python3 benches/compare/ratios.py

Takes the median of every (log, workload, threads, size, cache) over its repetitions, then for
each target and each rwal log in the input prints rwal's median, the reference's median (the
best peer, a physical floor, or rwal itself at one thread), their ratio, the target and
pass/FAIL, and beside them the median of the ratios taken within each round (each input file's
`rep`), with the best peer chosen per round. Peers are every log that is neither rwal (`rwal-*`) nor a baseline (`raw`,
`raw-group`, `phys`). Python 3 standard library only.
"""
import statistics
import sys

# The physical floor: peerbench's plain loop of 4 KiB pwrites on an O_DIRECT|O_DSYNC fd
# (`--phys-only odirect`).
FLOOR = "sync-latency/odirect+dsync_pwrite4k_prealloc-zeroed"
BASELINES = {"raw", "raw-group", "phys"}

# (what, (workload, threads, size, cache), metric, reference, op, target)
# reference: "peers" (best peer: lowest for "<=", highest for ">="), ("log", NAME) for that log at
# the same key, ("phys", WORKLOAD), or ("self", KEY) for the rwal log itself at another key.
DL = ("durable-latency", "1", "128", "")
TARGETS = [
    ("durable commit p50, 1 thread", DL, "p50_us", "peers", "<=", 1.0),
    ("durable commit p50 vs O_DIRECT|O_DSYNC 4K floor", DL, "p50_us", ("phys", FLOOR), "<=", 1.15),
    ("durable commit p99 vs raw pwrite+fdatasync", DL, "p99_us", ("log", "raw"), "<=", 1.0),
    ("group commit, 16 threads", ("group-commit", "16", "128", ""), "commits_per_s", "peers",
     ">=", 1.5),
    ("group commit, 64 threads", ("group-commit", "64", "128", ""), "commits_per_s", "peers",
     ">=", 1.5),
    ("non-durable append, 1 thread", ("append-throughput", "1", "128", ""), "records_per_s",
     "peers", ">=", 2.0),
    ("append scaling, 2 threads vs 1", ("append-threads", "2", "128", ""),
     "append_records_per_s", ("self", ("append-threads", "1", "128", "")), ">=", 1.6),
    ("recovery scan of 4 KiB records, warm", ("recovery", "1", "4096", "warm"),
     "recover_MB_per_s", "peers", ">=", 1.5),
]

# Metric shown per workload in the table of medians.
SHOWN = {
    "durable-latency": ["p50_us", "p99_us", "ops_per_s"],
    "group-commit": ["commits_per_s", "p50_us", "p99_us"],
    "append-throughput": ["records_per_s"],
    "append-threads": ["append_records_per_s", "records_per_s"],
    "recovery": ["recover_MB_per_s", "records"],
}


def parse(lines):
    """{key: [kv, ...]} with key (log, workload, threads, size, cache); phys rows: (phys, wl).
    Each kv also gets "round": (input file, rep), so that a ratio can be taken within a round.
    `lines` are (file index, line) pairs."""
    groups, failed, invalid, loads = {}, [], [], []
    for source, line in lines:
        if line.startswith("FAILED"):
            failed.append(line.strip())
            continue
        if not line.startswith("RESULT "):
            continue
        kv = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
        kv["round"] = (source, kv.get("rep", "?"))
        if kv.get("load1", "?") != "?":
            loads.append(float(kv["load1"]))
        if kv.get("log") == "phys":
            key = ("phys", kv.get("workload", "?"))
        else:
            key = (kv.get("log", "?"), kv.get("workload", "?"), kv.get("threads", ""),
                   kv.get("size", ""), kv.get("cache", ""))
            if kv.get("ok") == "false":  # recovery read back the wrong count: not a result
                invalid.append(line.strip())
                continue
        groups.setdefault(key, []).append(kv)
    return groups, failed, invalid, loads


def median(groups, key, metric):
    """(median, n) of `metric` over the repetitions of `key`, or (None, 0)."""
    vals = [float(kv[metric]) for kv in groups.get(key, []) if metric in kv]
    if not vals:
        return None, 0
    return statistics.median(vals), len(vals)


def by_round(groups, key, metric):
    """{round: value} of `metric` for `key` (the last value if a round has several)."""
    return {kv["round"]: float(kv[metric]) for kv in groups.get(key, []) if metric in kv}


def round_ratio(groups, r, key, metric, ref, op, peers):
    """(median over rounds of rwal's value / the reference's in the same round, rounds): the
    reference and rwal then share a round's disk and load, which a ratio of medians taken apart
    does not. The best peer is chosen per round, among every peer that ran this workload: a
    round in which one of them has no result (its run failed) is left out, since the best might
    be the missing one."""
    mine = by_round(groups, (r,) + key, metric)
    if ref == "peers":
        per_peer = [by_round(groups, (p,) + key, metric) for p in peers]
        per_peer = [v for v in per_peer if v]
        pick = min if op == "<=" else max
        refs = {}
        for rnd in mine:
            vals = [v[rnd] for v in per_peer if rnd in v]
            if vals and len(vals) == len(per_peer):
                refs[rnd] = pick(vals)
    elif ref[0] == "log":
        refs = by_round(groups, (ref[1],) + key, metric)
    elif ref[0] == "phys":
        refs = by_round(groups, ("phys", ref[1]), metric)
    else:
        refs = by_round(groups, (r,) + ref[1], metric)
    ratios = [mine[rnd] / refs[rnd] for rnd in mine if refs.get(rnd)]
    if not ratios:
        return None, 0
    return statistics.median(ratios), len(ratios)


def fmt(v, metric):
    if v is None:
        return "-"
    if metric.endswith("_us"):
        return f"{v:.1f} us"
    if metric.endswith("MB_per_s"):
        return f"{v:.0f} MB/s"
    if metric == "records":
        return f"{v:.0f}"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M/s"
    return f"{v:,.0f}/s"


def main():
    if len(sys.argv) > 1:
        lines = []
        for i, p in enumerate(sys.argv[1:]):
            with open(p) as f:
                lines.extend((i, line) for line in f)
    else:
        lines = [(0, line) for line in sys.stdin]
    groups, failed, invalid, loads = parse(lines)
    logs = sorted({k[0] for k in groups if k[0] != "phys"})
    rwal = sorted((l for l in logs if l.startswith("rwal-")),
                  key=lambda l: (["rwal-staged", "rwal-mmap", "rwal-pwrite"] + [l]).index(l))
    peers = [l for l in logs if l not in BASELINES and not l.startswith("rwal-")]

    # ---- medians of every log, per workload
    print("Medians over repetitions (n = repetitions):")
    rows = []
    for key in sorted(k for k in groups if k[0] != "phys"):
        log, w, t, s, cache = key
        cols = []
        for m in SHOWN.get(w, []):
            v, n = median(groups, key, m)
            cols.append(f"{m}={fmt(v, m)}")
        rows.append((w, int(t or 0), int(s or 0), cache, log, cols, len(groups[key])))
    for w, t, s, cache, log, cols, n in sorted(rows):
        where = f"{w} t={t} size={s}" + (f" {cache}" if cache else "")
        print(f"  {where:36} {log:12} n={n}  " + "  ".join(cols))
    v, n = median(groups, ("phys", FLOOR), "p50_us")
    v99, _ = median(groups, ("phys", FLOOR), "p99_us")
    print(f"  {'floor: 4 KiB O_DIRECT|O_DSYNC pwrite':36} {'phys':12} n={n}  "
          f"p50_us={fmt(v, 'p50_us')}  p99_us={fmt(v99, 'p99_us')}")
    print()

    # ---- the targets
    head = ("target", "log", "rwal", "reference", "ref value", "ratio", "goal", "result",
            "per round")
    table = [head]
    for what, key, metric, ref, op, goal in TARGETS:
        for r in rwal:
            mine, n_mine = median(groups, (r,) + key, metric)
            if ref == "peers":
                cands = [(median(groups, (p,) + key, metric), p) for p in peers]
                cands = [(v, n, p) for (v, n), p in cands if v is not None]
                if cands:
                    best = min(cands) if op == "<=" else max(cands)
                    ref_v, n_ref, ref_name = best
                    ref_name = f"best peer: {ref_name}"
                else:
                    ref_v, n_ref, ref_name = None, 0, "best peer: none"
            elif ref[0] == "log":
                ref_v, n_ref = median(groups, (ref[1],) + key, metric)
                ref_name = ref[1]
            elif ref[0] == "phys":
                ref_v, n_ref = median(groups, ("phys", ref[1]), metric)
                ref_name = "O_DIRECT|O_DSYNC floor"
            else:  # self at another key
                ref_v, n_ref = median(groups, (r,) + ref[1], metric)
                ref_name = f"{r}, {ref[1][1]} thread"
            if mine is None or not ref_v:
                ratio, verdict = None, "n/a"
            else:
                ratio = mine / ref_v
                ok = ratio <= goal if op == "<=" else ratio >= goal
                verdict = "pass" if ok else "FAIL"
                if min(n_mine, n_ref) < 3:
                    verdict += f" (n={min(n_mine, n_ref)})"
            per_round, rounds = round_ratio(groups, r, key, metric, ref, op, peers)
            table.append((what, r, fmt(mine, metric), ref_name, fmt(ref_v, metric),
                          "-" if ratio is None else f"{ratio:.2f}", f"{op} {goal:g}", verdict,
                          "-" if per_round is None else f"{per_round:.2f} (n={rounds})"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    print("Targets (rwal median / reference median; \"per round\": the median of the ratios "
          "taken within each round, where rwal and its reference shared the disk's mood):")
    for i, row in enumerate(table):
        print("  " + "  ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))

    reps = max((len(v) for v in groups.values()), default=0)
    print()
    if loads:
        print(f"load1 at the end of the runs: min {min(loads):.2f}, median "
              f"{statistics.median(loads):.2f}, max {max(loads):.2f} (2 vCPUs; results need a "
              "quiet machine, and group commit inflates load1 by the threads blocked in "
              "fdatasync)")
    if reps < 3:
        print(f"only {reps} repetition(s): the targets ask for medians of at least 3")
    for line in failed:
        print("run failed:", line)
    for line in invalid:
        print("recovery read back a wrong count (left out):", line[:160])


if __name__ == "__main__":
    main()
