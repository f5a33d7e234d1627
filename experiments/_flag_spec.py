"""How a shared flag of the entry points is declared: defined once (`Flag`, with
its bounds and parser), and defined for an entry point when it takes it
(`use`); list flags whose items a scalar flag's parser checks
(`define_list`, `items`); and the flags of an older flags.txt that an entry
point does not take, dropped when they hold their default. The shared flags
themselves are experiments/_flags.py's."""

import math

from absl import flags

from experiments import _run

# The DEFINE_* calls made here count as the calling entry point's (their
# flags are its key flags, listed by its --help).
flags.disclaim_key_flags()

SPECS = {}


class Flag:
  """A flag's one definition; `use` defines it for an entry point.

  `value` and `present` are those of the defined flag; `parser` reads a
  value as the flag does (its bounds, its choices); `is_default(text)`
  says whether `text` given for it is its default.
  """

  def __init__(self, define, name, default, help, parser, **kwargs):
    self.name = name
    self.default = default
    self.parser = parser
    self._define = lambda: define(name, default, help, **kwargs)
    SPECS[name] = self

  def define(self):
    if self.name in flags.FLAGS:  # another entry point in this process
      flags.declare_key_flag(self.name)
    else:
      self._define()

  def is_default(self, text):
    try:
      return self.parser.parse(text) == self.default
    except ValueError:
      return False

  def _flag(self):
    if self.name not in flags.FLAGS:
      raise AttributeError(
        f'--{self.name} is not a flag of this entry point: add it to its '
        '_flag_spec.use(...)'
      )
    return flags.FLAGS[self.name]

  @property
  def value(self):
    return self._flag().value

  @property
  def present(self):
    return bool(self._flag().present)


def string(name, default, help):
  return Flag(flags.DEFINE_string, name, default, help, flags.ArgumentParser())


def boolean(name, default, help):
  return Flag(flags.DEFINE_bool, name, default, help, flags.BooleanParser())


class FiniteFloat(flags.FloatParser):
  """A float flag's parser that refuses nan and inf (which pass any bound:
  every comparison with nan is false)."""

  def convert(self, argument):
    value = super().convert(argument)
    if not math.isfinite(value):
      raise ValueError(f'{argument!r} is not a finite number')
    return value


def define_float(name, default, help, lower_bound=None, upper_bound=None):
  """flags.DEFINE_float, finite values only (FiniteFloat)."""
  parser = FiniteFloat(lower_bound=lower_bound, upper_bound=upper_bound)
  return flags.DEFINE(
    parser, name, default, help, serializer=flags.ArgumentSerializer()
  )


def floating(name, default, help, lower_bound=None, upper_bound=None):
  bounds = dict(lower_bound=lower_bound, upper_bound=upper_bound)
  parser = FiniteFloat(**bounds)
  return Flag(define_float, name, default, help, parser, **bounds)


def integer(name, default, help, lower_bound=None, upper_bound=None):
  bounds = dict(lower_bound=lower_bound, upper_bound=upper_bound)
  parser = flags.IntegerParser(**bounds)
  return Flag(flags.DEFINE_integer, name, default, help, parser, **bounds)


def enum(name, default, choices, help):
  choices = list(choices)
  return Flag(
    lambda n, d, h: flags.DEFINE_enum(n, d, choices, h),
    name,
    default,
    help,
    flags.EnumParser(choices),
  )


def list_of(name, item, default, help, allow_empty=False):
  return Flag(
    lambda n, d, h: define_list(n, item, d, h, allow_empty),
    name,
    default,
    help,
    ListOf(item, allow_empty),
  )


class ListOf(flags.ListParser):
  """A comma-separated list whose items `item` (an absl parser) accepts."""

  def __init__(self, item, allow_empty=False):
    super().__init__()
    self.item = item
    self.allow_empty = allow_empty
    each = getattr(item, 'syntactic_help', '') or (
      f'of <{"|".join(getattr(item, "enum_values", []))}>'
    )
    self.syntactic_help = f'a comma separated list, each {each}'.replace(
      'each of', 'each one of'
    )

  def parse(self, argument):
    values = super().parse(argument)
    if not values and not self.allow_empty:
      raise ValueError('is empty; give at least one value')
    for v in values:
      try:
        self.item.parse(v)
      except ValueError as e:
        raise ValueError(str(e) if v in str(e) else f'{v!r}: {e}') from None
    return values

  def flag_type(self):
    return f'comma separated list of {self.item.flag_type()}'


def define_list(name, item, default, help, allow_empty=False):
  """Defines the list flag --name for the calling entry point; each item is
  checked by `item`: a Flag here (its parser and bounds) or an absl parser.
  Returns the absl FlagHolder (its value: the items as given, strings)."""
  parser = item.parser if isinstance(item, Flag) else item
  return flags.DEFINE(
    ListOf(parser, allow_empty),
    name,
    default,
    help,
    serializer=flags.CsvListSerializer(','),
  )


def items(holder):
  """A list flag's items, parsed by the parser it was defined with."""
  parser = flags.FLAGS[holder.name].parser
  return [parser.item.parse(v) for v in holder.value]


def _drop_unused_defaults(argv):
  """argv (flag files read) less each flag defined here that the entry
  point does not take, given its default value: the flags.txt of a run
  made before each entry point took only its own flags names them all.
  Given another value, it is left for absl to refuse."""
  argv = argv[:1] + flags.FLAGS.read_flags_from_files(argv[1:], False)
  out = argv[:1]
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':
      return out + argv[i:]
    name, eq, value = arg.lstrip('-').partition('=')
    if not eq and name.startswith('no') and name not in SPECS:
      name, value = name[2:], 'false'
    spec = SPECS.get(name)
    unused = arg.startswith('-') and spec and name not in flags.FLAGS
    if not (unused and spec.is_default(value if eq or value else 'true')):
      out.append(arg)
  return out


_run.ARGV_FILTERS.append(_drop_unused_defaults)


def use(*names):
  """Defines the named flags (names, or tuples of names such as DATA) for
  the calling entry point."""
  for group in names:
    for name in (group,) if isinstance(group, str) else group:
      SPECS[name].define()
