"""Windows over a stream of prediction rows: the "current" side of drift.

A :class:`Windower` takes the rows one model serves, in batches, and cuts
them into windows; every window that closes comes back as a
:class:`ClosedWindow` holding a :class:`~monitor.engine.profiles.Profile`, the same
kind of object as a reference profile, so the analysis compares one with the
other.

Windows (:class:`WindowSpec`)
    * count windows: ``WindowSpec(size=1000)`` closes every 1000 rows;
      ``WindowSpec(size=1000, slide=250)`` closes a window of the last 1000
      rows every 250 rows, from the first full window on.  Boundaries are
      exact: a batch may close several windows and is split at them.
    * time windows: ``WindowSpec(duration_s=60)`` closes windows aligned to
      multiples of 60 s since the epoch (``[k*60 s, (k+1)*60 s)``);
      ``WindowSpec(duration_s=60, slide=10)`` closes the window of the last
      60 s at every multiple of 10 s.  Time is event time, the
      ``timestamps_ms`` given with the rows, or else the injected ``clock``
      (seconds, ``time.time`` in production, a fake in tests) read once per
      batch.  A window closes when an event at or beyond its end arrives, or
      when :meth:`Windower.tick` is called with a clock time at or beyond it,
      which closes windows of a quiet stream (pass ``now - grace`` to wait
      for stragglers).  Windows without rows are not emitted.  The first
      sliding time window emitted is the first that starts at or after the
      start of the pane of the first event, so no window is reported half
      empty only because the windower started late.

Slides must divide the window (``size % slide == 0``, and the same in whole
milliseconds for time windows): a window is then the merge of the last
``size / slide`` panes, sub-windows of ``slide`` rows or seconds, and each
row is summarised once.  Other slides would need panes of the greatest common
divisor, up to one per row, so they are refused.

Late events
    A time-window event whose timestamp lies before the start of the open
    pane (for tumbling windows, the open window) is counted in
    :attr:`Windower.late_events` and dropped.  Events are taken in the order
    they arrive, so the result does not depend on how rows are batched;
    out-of-order events inside the open pane are fine.  Windows already
    emitted never change.

Values
    numerical: ``int``/``float``/numeric strings are numbers, ``bool`` is
    1.0/0.0, ``None``/NaN is missing, +/-inf is non-finite; anything else
    (text that is not a number, ``""``, dicts, lists) is *invalid*, counted
    and kept out of the sample.  categorical: ``str``, numbers and booleans
    are categories (labelled as in reference profiles), ``None``/NaN is
    missing, dicts/lists/bytes are invalid.  boolean: ``True``/``False``,
    ``"true"``/``"false"``, 0/1 and the other words reference profiles accept
    map to ``"true"``/``"false"``; anything else is invalid.  A feature absent
    from a row is missing in that row.  Keys that are not features are counted
    per name in :attr:`Windower.unknown_fields` (and per window in
    :attr:`ClosedWindow.unknown_fields`), never dropped silently; at most
    :data:`MAX_UNKNOWN_FIELDS` names are kept, the rest count under
    ``"__other__"``.

Memory
    A pane holds per numerical feature at most ``settings.exact_cap`` exact
    values, then a KLL sketch (see :class:`~monitor.engine.profiles.NumericAccumulator`),
    per categorical feature at most ``max_categories`` counts, and at most
    ``size / slide`` panes are held.  :meth:`Windower.state_size` reports what
    is held.  With ``exact_cap=None`` time windows are unbounded (count panes
    are bounded by their row count anyway).

Checkpoints
    :meth:`Windower.snapshot` gives the state as bytes, :meth:`Windower.restore`
    puts it back into a windower built with the same spec, features and
    settings.  Panes travel as :mod:`monitor.batch.profile_io` profiles plus a JSON
    header with the exact moments, so windows over exact panes come out
    identical after a restore.  (Sketched panes are restored from the same
    sketch bytes; when a window holds more than ``max_categories`` distinct
    categories, which of them fold into "other" may differ after a restore.)

A windower is not thread-safe: one consumer feeds it.

Modules: :mod:`~monitor.engine.windows.spec` (:class:`WindowSpec`,
:class:`ClosedWindow`), :mod:`~monitor.engine.windows.columns` (values into
columns, unknown fields), :mod:`~monitor.engine.windows.panes`,
:mod:`~monitor.engine.windows.windower` (:class:`Windower`) and
:mod:`~monitor.engine.windows.snapshot` (checkpoint bytes).
"""

from __future__ import annotations

from monitor.engine.windows.columns import FALSE_WORDS as FALSE_WORDS
from monitor.engine.windows.columns import MAX_UNKNOWN_FIELDS, OTHER_FIELDS
from monitor.engine.windows.columns import TRUE_WORDS as TRUE_WORDS
from monitor.engine.windows.spec import ClosedWindow, WindowKind, WindowSpec, WindowSpecError
from monitor.engine.windows.windower import Windower

__all__ = [
    "MAX_UNKNOWN_FIELDS",
    "OTHER_FIELDS",
    "ClosedWindow",
    "WindowKind",
    "WindowSpec",
    "WindowSpecError",
    "Windower",
]
