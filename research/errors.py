"""The one exception type for mistakes a user can fix (bad data, bad paths),
and the one line an interrupt is.

Entry points catch `UserError` and print its message as a single line, with no
traceback. The message says what is wrong, where (file and line when known),
and what to do.
"""


class UserError(Exception):
  """A problem with the user's input, reported as one line."""


def not_an_interrupt(record):
  """A logging filter: False for a record that carries a KeyboardInterrupt.

  A Ctrl-C that lands while a library waits (orbax, for a checkpoint being
  written) is logged by it with a traceback before the entry point says the
  interrupt in its one line."""
  return not (record.exc_info and record.exc_info[0] is KeyboardInterrupt)
