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
  """A logging filter: False for a record that carries a KeyboardInterrupt,
  or a file system fault met writing a checkpoint.

  A Ctrl-C that lands while a library waits (orbax, for a checkpoint being
  written) is logged by it with a traceback before the entry point says the
  interrupt in its one line; likewise orbax logs, from each of its threads,
  a disk that filled while it wrote (the OS error code in tensorstore's
  message), which the entry point says in its one line, and asyncio logs
  the failed reads of a damaged checkpoint (which `--resume` names) when
  their futures are collected, at a moment garbage collection picks.
  Attached to absl's logger and to asyncio's."""
  if record.exc_info and record.exc_info[0] is KeyboardInterrupt:
    return False
  exc = record.exc_info[1] if record.exc_info else None
  text = f'{record.getMessage()} {exc}'
  # asyncio's "exception was never retrieved", when the futures of a failed
  # checkpoint read are collected: the read's failure is said already.
  echo = 'never retrieved' in text and 'TensorStore' in text
  return "os_error_code='" not in text and not echo


def _late_storage_report(where, e):
  """Whether an exception Python would print on its own (from a thread, a
  callback or an unawaited coroutine) is the echo of a checkpoint read or
  write that failed: orbax's reading coroutines whose error was raised to
  the caller already, and tensorstore's callbacks into the event loop that
  orbax closed once the first of them failed ("Event loop is closed").
  The entry point's one line says the fault."""
  code = getattr(where, 'cr_code', None)
  if code is not None and 'orbax' in code.co_filename:
    return True
  return isinstance(e, RuntimeError) and str(e) == 'Event loop is closed'


class Interrupts:
  """Ctrl-C that is never lost: `install` makes SIGINT raise
  KeyboardInterrupt, as Python's own handler does, and remember that it
  came; `check` raises it again. Python drops an exception raised inside a
  garbage-collection callback or a `__del__` ("Exception ignored in ..."),
  so a Ctrl-C that lands there would otherwise let the run go on; the
  entry points `check` at every progress line. Python's report of the
  dropped interrupt is left out (`sys.unraisablehook`): the entry point's
  one line says it; so are the echoes of a failed checkpoint read or
  write (`_late_storage_report`)."""

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
      if not isinstance(unraisable.exc_value, KeyboardInterrupt) and not (
        _late_storage_report(unraisable.object, unraisable.exc_value)
      ):
        report(unraisable)

    sys.unraisablehook = hook
    excepthook = sys.excepthook

    def late(kind, value, tb):
      if not _late_storage_report(None, value):
        excepthook(kind, value, tb)

    sys.excepthook = late

  def check(self):
    if self.pending:
      raise KeyboardInterrupt
