"""The one exception type for mistakes a user can fix (bad data, bad paths),
and the one line an interrupt is (never lost: `Interrupts`).

Entry points catch `UserError` and print its message as a single line, with no
traceback. The message says what is wrong, where (file and line when known),
and what to do.
"""

import signal
import sys


class UserError(Exception):
  """A problem with the user's input, reported as one line."""


def not_an_interrupt(record):
  """A logging filter: False for a record that carries a KeyboardInterrupt.

  A Ctrl-C that lands while a library waits (orbax, for a checkpoint being
  written) is logged by it with a traceback before the entry point says the
  interrupt in its one line."""
  return not (record.exc_info and record.exc_info[0] is KeyboardInterrupt)


class Interrupts:
  """Ctrl-C that is never lost: `install` makes SIGINT raise
  KeyboardInterrupt, as Python's own handler does, and remember that it
  came; `check` raises it again. Python drops an exception raised inside a
  garbage-collection callback or a `__del__` ("Exception ignored in ..."),
  so a Ctrl-C that lands there would otherwise let the run go on; the
  entry points `check` at every progress line. Python's report of the
  dropped interrupt is left out (`sys.unraisablehook`): the entry point's
  one line says it."""

  def __init__(self):
    self.pending = False

  def _handler(self, signum, frame):
    del signum, frame
    self.pending = True
    raise KeyboardInterrupt

  def install(self):
    signal.signal(signal.SIGINT, self._handler)
    report = sys.unraisablehook

    def hook(unraisable):
      if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        report(unraisable)

    sys.unraisablehook = hook

  def check(self):
    if self.pending:
      raise KeyboardInterrupt
