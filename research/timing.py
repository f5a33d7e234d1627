"""Where a run's wall time goes: named parts, measured once each.

`Clock` adds up the seconds spent in named parts (`with clock('load'):`);
`breakdown` puts a train run's parts in one dict, the rest of the wall time
as 'other'. Every run writes it into result.json ('wall'), so each run
measures how much of its time is spent outside the compiled steps.
"""

import contextlib
import os
import time

PARTS = (
  'startup',  # the interpreter and imports, up to the entry point's main
  'load',  # data, vectors, windows
  'setup',  # initial parameters, the task's device data, the program's layout
  'compile',  # the training programs
  'train',  # the compiled steps
  'evaluate',  # waiting for dev (and training-sample) scores, and test
  'checkpoint',  # saving (and restoring) the training state
  'write',  # the run directory's files
)


class Clock:
  """Seconds per named part; `with clock(name):` adds to one."""

  def __init__(self):
    self.seconds = {}

  @contextlib.contextmanager
  def __call__(self, name):
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - t0)

  def add(self, name, seconds):
    self.seconds[name] = self.seconds.get(name, 0.0) + seconds

  def merge(self, other):
    """Adds another clock's (or dict's) parts to this one."""
    for name, seconds in dict(getattr(other, 'seconds', other)).items():
      self.add(name, seconds)


def process_seconds():
  """Seconds since this process started (Linux: /proc), or None."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = float(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
  except (OSError, IndexError, ValueError):
    return None
  return uptime - start_ticks / os.sysconf('SC_CLK_TCK')


def breakdown(seconds, wall):
  """{part: seconds} of PARTS (those measured), 'other' (the wall time no
  part accounts for), 'wall', and 'wall_per_step_time': wall over the
  compiled steps' time (train + compile)."""
  out = {p: round(seconds[p], 3) for p in PARTS if p in seconds}
  out['other'] = round(wall - sum(seconds.get(p, 0.0) for p in PARTS), 3)
  out['wall'] = round(wall, 3)
  stepping = seconds.get('train', 0.0) + seconds.get('compile', 0.0)
  out['wall_per_step_time'] = round(wall / stepping, 3) if stepping else None
  return out


def line(b):
  """The breakdown as one progress line."""
  parts = ', '.join(f'{p} {b[p]:.1f}' for p in (*PARTS, 'other') if p in b)
  ratio = b['wall_per_step_time']
  tail = f' ({ratio:.2f}x the training and compiling)' if ratio else ''
  return f'wall {b["wall"]:.1f}s: {parts}{tail}'
