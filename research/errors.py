"""The one exception type for mistakes a user can fix (bad data, bad paths).

Entry points catch `UserError` and print its message as a single line, with no
traceback. The message says what is wrong, where (file and line when known),
and what to do.
"""


class UserError(Exception):
  """A problem with the user's input, reported as one line."""
