"""promtool unit tests for every alert, generated from the same settings as the rules.

For each alert there is at least one fault case and one healthy case:
- the fault case is silent before its condition first holds (when it holds
  later than the first sample), still silent one evaluation before its `for`
  has elapsed, and firing right after it with the exact labels and
  annotations;
- the healthy case stays silent at the same moments and at its last sample.

The tests hold on Prometheus 2.x and 3.x alike. Input samples and rule
evaluations are one minute apart and every window is whole minutes, so a
window always starts exactly on a sample: Prometheus 2 counts that sample,
Prometheus 3 (left-open ranges) does not. The cases never depend on it:
- a fault's condition starts when a change *enters* the windows (both versions
  see a change between samples j-1 and j from time j on); a change *leaving* a
  window is seen one step apart, so no case starts its condition that way;
- every counter is either a straight line or exactly 0 until its step and a
  straight line from 0 after it, so rate(), increase(), deriv() and
  predict_linear() give the same value whether or not the left-edge sample is
  in the range (Prometheus 3 extrapolates to the edge along the same line,
  and stops at 0 where the line does);
- windows are at least two samples long, so a left-open range is never empty.
tests/test_alerting.py checks this on the Prometheus 2 here by re-running the
tests with every range shortened by a millisecond, which drops the left-edge
sample the way Prometheus 3 does.

The description's `$value` is printed by Prometheus' humanize functions. Each
fault case is built to reach a round value at the moment it is checked (a
whole percent, MiB, count, second or day), so the text is known without
re-implementing those functions; the comment on each `value=` names the
function that prints it.

One module per group of rules holds its alerts' scenarios (`exporter`, `process`,
`logs`, `database`, `probe`), built from `cases`; `testfile` turns them into
the promtool file.
"""

# Importing each group's module registers its scenarios.
from devflow_monitor.alerting.unittests import database, exporter, logs, probe, process  # noqa: F401
from devflow_monitor.alerting.unittests.testfile import test_file

__all__ = ["test_file"]
