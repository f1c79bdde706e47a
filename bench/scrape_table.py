"""The scrape benchmark's results table, next to node-exporter and process-exporter, and its PASS/FAIL
lines against the targets below.
"""

from __future__ import annotations

import psutil

from bench.harness import ratio, size_label
from bench.scrapes import Row

# The targets a scrape is held to: p99 against node-exporter's and flat in the database's size,
# memory, and CPU per scrape against node-exporter's.
P99_VS_NODE = 1.3
P99_SIZE_RATIO = 1.2
RSS_LIMIT_MIB = 32.0
CPU_VS_NODE = 1.6


def print_table(rows: list[Row], node: Row, proc: Row, writers: list[dict], args) -> list[str]:
    """The results table and the pass/fail lines; returns the failed targets."""
    print()
    print(f"{args.scrapes} scrapes per exporter, all exporters scraped in rotating turns, each scrape on a new "
          f"TCP connection (connect to last body byte); a writer inserting {args.rate:g} events/s into each "
          f"database; {psutil.cpu_count()} CPUs shared with other work, so expect noise.")
    header = (f"{'target':<17}{'events':>7}{'build s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
              f"{'RSS MiB':>9}{'CPU ms/scrape':>15}{'net':>7}{'p99/node':>10}{'p99/proc':>10}{'CPU/node':>10}"
              f"  notes")
    print(header)
    print("-" * len(header))
    for row in [node, proc, *rows]:
        ours = row.target == "devflow-monitor"
        build = f"{row.build_seconds:.0f}" if row.build_seconds is not None else "-"
        print(f"{row.target:<17}{size_label(row.rows):>7}{build:>9}{row.percentile(50):>8.2f}"
              f"{row.percentile(95):>8.2f}{row.p99:>8.2f}{row.rss_mib:>9.1f}{row.cpu_raw_ms:>15.2f}"
              f"{row.cpu_net_ms:>7.2f}"
              f"{ratio(row.p99, node.p99) if ours else '':>10}{ratio(row.p99, proc.p99) if ours else '':>10}"
              f"{ratio(row.cpu_net_ms, node.cpu_net_ms) if ours else '':>10}  {'; '.join(row.notes)}")
    for row in rows:
        if row.collector_ms:
            spent = ", ".join(f"{name} {ms:.2f}" for name, ms in row.collector_ms.items())
            print(f"devflow-monitor {size_label(row.rows):>4}: mean ms per collector (self-reported): {spent}")
    busy = sum(w.get("busy", 0) for w in writers)
    inserted = sum(w.get("inserted", 0) for w in writers)
    p99 = max((w.get("insert_p99_ms", 0) for w in writers), default=0)
    worst = max((w.get("insert_max_ms", 0) for w in writers), default=0)
    print(f"writers: {inserted} events inserted, {busy} SQLITE_BUSY, insert p99 {p99:.1f} ms (worst writer), "
          f"slowest insert {worst:.1f} ms")
    print("build s: time the cached database took to build, once (reused while it holds the expected rows)")
    largest = max(rows, key=lambda r: r.rows)
    smallest = min(rows, key=lambda r: r.rows)
    big = size_label(largest.rows)
    checks = [
        (f"p99 at {big} <= {P99_VS_NODE:g}x node-exporter p99",
         f"{largest.p99:.2f} ms vs {node.p99:.2f} ms = {ratio(largest.p99, node.p99)}",
         largest.p99 <= P99_VS_NODE * node.p99),
        (f"p99 at {big} < process-exporter p99",
         f"{largest.p99:.2f} ms vs {proc.p99:.2f} ms = {ratio(largest.p99, proc.p99)}",
         largest.p99 < proc.p99),
    ]
    if largest is not smallest:
        checks.append((f"p99 {big}/{size_label(smallest.rows)} < {P99_SIZE_RATIO:g}",
                       f"{largest.p99:.2f} / {smallest.p99:.2f} ms = {ratio(largest.p99, smallest.p99)}",
                       largest.p99 / smallest.p99 < P99_SIZE_RATIO))
    fattest = max(rows, key=lambda r: r.rss_mib)
    checks.append((f"RSS < {RSS_LIMIT_MIB:g} MiB (largest, at {size_label(fattest.rows)})",
                   f"{fattest.rss_mib:.1f} MiB", fattest.rss_mib < RSS_LIMIT_MIB))
    hungriest = max(rows, key=lambda r: r.cpu_net_ms)
    checks.append((f"CPU/scrape <= {CPU_VS_NODE:g}x node-exporter's (net, worst at {size_label(hungriest.rows)})",
                   f"{hungriest.cpu_net_ms:.2f} ms vs {node.cpu_net_ms:.2f} ms = "
                   f"{ratio(hungriest.cpu_net_ms, node.cpu_net_ms)}",
                   hungriest.cpu_net_ms <= CPU_VS_NODE * node.cpu_net_ms))
    if big != "10M":
        print(f"note: 10M was not measured in this run; the 10M targets are checked at {big}")
    print()
    width = max(len(name) for name, _, _ in checks)
    for name, figures, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {figures}")
    return [name for name, _, ok in checks if not ok]
