"""`devflow-monitor dashboard`: the guide's CLI dashboard views (section 5.1) in a terminal.

Reads the exporter's /metrics (or Prometheus, with `--prometheus`), keeps a
short history for rates and sparklines, and redraws in place. Without a
terminal (a pipe, a log file) it prints one plain frame and exits, as
`--once` does (1 when the source cannot be read); `--frames N` prints N.

Rates cover a window that makes sense for the figure, never two neighbouring
samples: Prometheus computes them with `rate()` over the settings'
`rate_window` (the alerts' own window, 5m), since a refresh shorter than its
scrape interval sees the same sample twice and then a jump. From the exporter
they span `--rate-window` seconds (default 30) of the dashboard's own samples:
`n/a` until that much has been seen, and `--once` waits that long between its
two samples. Over 2 s an error logged every 30 s reads 0 or 30 per minute; over
30 s it reads 2 or 4, and a longer window is one flag away.

Each view's rows and the colours of their levels are in ops/dashboard_views.py; the
sources in ops/dashboard_sources.py; the history and its rates in
ops/dashboard_history.py. This module draws them and runs the command.

Every metric name in the dashboard modules comes from `core.catalog`.
"""

from __future__ import annotations

import math
import sys
import time

from devflow_monitor.core.settings import Settings, SettingsError, load, seconds
from devflow_monitor.ops import common
from devflow_monitor.ops.dashboard_history import HISTORY, History
from devflow_monitor.ops.dashboard_sources import ExporterSource, PrometheusSource
from devflow_monitor.ops.dashboard_views import VIEW_ROWS
from devflow_monitor.core.commands import add_command, config_from_args

VIEWS = tuple(VIEW_ROWS)
SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-=+*#@"
SPARK_WIDTH = 30
EXPORTER_RATE_WINDOW = 30.0  # seconds; see the module docstring
EXPORTER_REFRESH_SECONDS = 2.0  # the exporter answers with fresh figures at each scrape


def register(subparsers) -> None:
    parser = add_command(subparsers, "dashboard", run,
                         help="live terminal dashboard (overview, performance, errors, activity)")
    parser.add_argument("--view", choices=VIEWS, default="overview", help="which view (default overview)")
    parser.add_argument("--settings", metavar="FILE",
                        help="YAML or Jsonnet alert settings whose thresholds set the colours (default: built in)")
    source = parser.add_argument_group("source", "The exporter's /metrics, unless --prometheus is given.")
    source.add_argument("--url", metavar="URL",
                        help="exporter metrics URL (default: --web.listen-address and --web.telemetry-path, "
                             "http://127.0.0.1:9764/metrics)")
    source.add_argument("--prometheus", metavar="URL",
                        help="read from Prometheus at URL instead of the exporter (history comes from it too)")
    source.add_argument("--match", metavar="LABELS",
                        help='with --prometheus: extra label matchers, e.g. \'job="devflow"\'')
    parser.add_argument("--interval", type=float, metavar="SECONDS",
                        help="refresh interval (default 2; with --prometheus the settings' scrape_interval, since "
                             "Prometheus has nothing newer before its next scrape)")
    parser.add_argument("--once", action="store_true",
                        help="print one frame and exit (the default when stdout is not a terminal)")
    parser.add_argument("--rate-window", type=float, metavar="SECONDS",
                        help="span of the rates: from the exporter default 30 (--once samples twice this far "
                             "apart); with --prometheus default the settings' rate_window (5m)")
    parser.add_argument("--frames", type=int, default=0, metavar="N",
                        help="stop after N frames (default: run until Ctrl-C on a terminal, 1 otherwise)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="HTTP timeout (default 3)")


# --- drawing ------------------------------------------------------------------------

def sparkline(values: list | None, width: int = SPARK_WIDTH, ascii_only: bool = False) -> str:
    if not values:
        return ""
    values = values[-width:]
    known = [v for v in values if v is not None]
    if not known:
        return ""
    glyphs = SPARK_ASCII if ascii_only else SPARK
    low, high = min(known), max(known)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            out.append(glyphs[0] if span == 0 else glyphs[min(len(glyphs) - 1, int((v - low) / span * len(glyphs)))])
    return "".join(out)


def render(view: str, history: History, settings: Settings, source_label: str, interval: float, *, color: bool,
           ascii_only: bool, problem: str | None = None, live: bool = False) -> list[str]:
    stamp = time.strftime("%H:%M:%S")
    header = f"DevFlow {view} | {source_label} | {stamp} | {history.rates_note()}"
    if live:
        header += f" | every {interval:g}s, Ctrl-C quits"
    lines = [common.paint(header, "bold", color), ""]
    if problem:
        lines.append(common.paint(f"  source unreachable: {problem}", "crit", color))
        if not history.snapshots:
            return lines
        lines += [f"  (showing the last data, {common.human_duration(time.time() - history.last.time)} old)", ""]
    rows = VIEW_ROWS[view](history, settings)
    width = max(len(r.label) for r in rows)
    value_width = min(40, max(len(r.value) for r in rows))
    for row in rows:
        value = common.paint(f"{row.value:<{value_width}}", row.level, color)
        trend = sparkline(row.trend, ascii_only=ascii_only)
        lines.append(f"  {row.label:<{width}}  {value}  {trend}".rstrip())
    return lines


def refresh_interval(args, settings: Settings) -> float:
    """--interval, else Prometheus' scrape interval (nothing newer comes before it), else the exporter's pace."""
    if args.interval is not None:
        return args.interval
    return seconds(settings.scrape_interval) if args.prometheus else EXPORTER_REFRESH_SECONDS


def rate_window(args, settings: Settings) -> float:
    """--rate-window, else the rules' rate_window with Prometheus, else the exporter's samples' window."""
    if args.rate_window:
        return args.rate_window
    return seconds(settings.rate_window) if args.prometheus else EXPORTER_RATE_WINDOW


def run(args) -> int:
    """A live view of DevFlow from the exporter's /metrics (or from Prometheus), refreshed in place with sparkline
    trends and the guide's thresholds as colours. Plain text when not on a terminal."""
    config = config_from_args(args)
    try:
        settings = load(args.settings)
    except SettingsError as exc:
        return common.fail("dashboard", str(exc))
    args.interval = refresh_interval(args, settings)
    spans = (args.interval, args.timeout, 1.0 if args.rate_window is None else args.rate_window)
    if not all(math.isfinite(v) and v > 0 for v in spans) or args.frames < 0:
        return common.fail("dashboard", "--interval, --timeout and --rate-window must be positive, "
                                        "--frames at least 0")
    window = rate_window(args, settings)
    if args.prometheus:
        source = PrometheusSource(args.prometheus, args.match, args.timeout, window)
    else:
        source = ExporterSource(args.url or common.local_url(config.web.listen_address, config.web.telemetry_path),
                                args.timeout)
    terminal = sys.stdout.isatty()
    once = args.once or (not terminal and not args.frames)  # a pipe or a file gets one frame, then EOF
    live = terminal and not once
    color = common.use_color()
    ascii_only = not _can_encode(SPARK)
    # Room for the rate window and a full sparkline of rates after it.
    history = History(window, max(HISTORY, int(window / args.interval) + SPARK_WIDTH + 2))
    try:
        for snapshot in source.backfill(SPARK_WIDTH, args.interval):
            history.add(snapshot)
    except common.FAILED as exc:
        if once:
            return common.fail("dashboard", f"cannot read {source.url}: {exc}")
    if once:
        return _once(args, source, history, settings, color, ascii_only)
    frames = 0
    if live:
        sys.stdout.write("\x1b[?25l")  # hide the cursor while redrawing
    try:
        while True:
            problem = None
            try:
                history.add(source.sample())
            except common.FAILED as exc:
                problem = str(exc)
            lines = render(args.view, history, settings, source.url, args.interval, color=color,
                           ascii_only=ascii_only, problem=problem, live=live)
            if live:
                # Home, redraw each line clearing its rest, clear below: no flicker, no scrolling.
                sys.stdout.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            else:
                sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            frames += 1
            if args.frames and frames >= args.frames:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if live:
            sys.stdout.write("\x1b[?25h")
            sys.stdout.flush()


def _once(args, source, history: History, settings: Settings, color: bool, ascii_only: bool) -> int:
    try:
        first = source.sample()
        history.add(first)
        if first.rates is None:  # the exporter has no history: watch it for one rate window
            time.sleep(history.window)
            history.add(source.sample())
    except common.FAILED as exc:
        return common.fail("dashboard", f"cannot read {source.url}: {exc}")
    print("\n".join(render(args.view, history, settings, source.url, args.interval, color=color,
                           ascii_only=ascii_only)))
    return 0


def _can_encode(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False
