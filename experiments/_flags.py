"""The entry points' command line: every shared flag, defined once.

Not an entry point. Each flag below is written once, with its bounds, so
that every experiment spells and checks it the same way. An entry point
takes the ones it reads with `use(...)` when it is imported: they are
defined then as its own flags, so its --help lists them with their
defaults, and a flag it does not read is refused as unknown.

List flags (--seeds, --l2s, --batch_sizes, ...) are defined by
`define_list`, which checks every item, when the flags are parsed, with the
parser of a scalar flag here: --l2s with the bounds of --l2, --seeds with
those of --seed, so `sweep --l2s=-1` is refused as `train --l2=-1` is.

Values are read through the holders (`LR.value`; `items(holder)` gives a
list flag's parsed items). experiments/_configs.py builds the library's
configurations from the flags; the run plumbing (errors, exit codes, the
run directory) is experiments/_run.py.
"""

import os

from absl import flags

from experiments import _run
from research import classifier
from research import features as features_lib
from research import model as model_lib
from research import ner
from research import tagschemes

# The DEFINE_* calls that `use` and `define_list` make count as the calling
# entry point's (their flags are its key flags, listed by its --help).
flags.disclaim_key_flags()

DEFAULT_DATA_DIR = str(_run.REPO / 'data' / 'wikigold')
_SPECS = {}


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
    _SPECS[name] = self

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
        '_flags.use(...)'
      )
    return flags.FLAGS[self.name]

  @property
  def value(self):
    return self._flag().value

  @property
  def present(self):
    return bool(self._flag().present)


def _string(name, default, help):
  return Flag(flags.DEFINE_string, name, default, help, flags.ArgumentParser())


def _bool(name, default, help):
  return Flag(flags.DEFINE_bool, name, default, help, flags.BooleanParser())


def _float(name, default, help, lower_bound=None, upper_bound=None):
  bounds = dict(lower_bound=lower_bound, upper_bound=upper_bound)
  parser = flags.FloatParser(**bounds)
  return Flag(flags.DEFINE_float, name, default, help, parser, **bounds)


def _integer(name, default, help, lower_bound=None, upper_bound=None):
  bounds = dict(lower_bound=lower_bound, upper_bound=upper_bound)
  parser = flags.IntegerParser(**bounds)
  return Flag(flags.DEFINE_integer, name, default, help, parser, **bounds)


def _enum(name, default, choices, help):
  choices = list(choices)
  return Flag(
    lambda n, d, h: flags.DEFINE_enum(n, d, choices, h),
    name,
    default,
    help,
    flags.EnumParser(choices),
  )


def _list(name, item, default, help, allow_empty=False):
  return Flag(
    lambda n, d, h: define_list(n, item, d, h, allow_empty),
    name,
    default,
    help,
    _ListOf(item, allow_empty),
  )


class _ListOf(flags.ListParser):
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
    _ListOf(parser, allow_empty),
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
    if not eq and name.startswith('no') and name not in _SPECS:
      name, value = name[2:], 'false'
    spec = _SPECS.get(name)
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
      _SPECS[name].define()


# --- Data. ------------------------------------------------------------------

DATA_DIR = _string(
  'data_dir',
  DEFAULT_DATA_DIR,
  'CoNLL directory (train/dev[/test] files, or one file to split 80/10/10 '
  'by documents: document i is dev when i % 10 == 8, test when i % 10 == 9).',
)
EMBEDDINGS = _string(
  'embeddings',
  'glove',
  "'glove' (GloVe 6B 50d, offline), 'random', or a GloVe/word2vec text file.",
)
VOCAB = _enum(
  'vocab',
  'data',
  ['data', 'pretrained'],
  "'data': training words + dev/test words with a pretrained vector; "
  "'pretrained': also every pretrained word (400k for GloVe).",
)
EMBED_DIM = _integer(
  'embed_dim', 50, 'd for --embeddings=random.', lower_bound=1
)
FEATURES = _list(
  'features',
  flags.EnumParser([*features_lib.KINDS, 'chars']),
  [],
  'Token features beside the word vector, any of '
  f'{",".join(features_lib.KINDS)} (research/features.py), and chars: a '
  'character CNN per word (research/chars.py; --char_dim, --char_filters, '
  '--char_width).',
  allow_empty=True,
)
AFFIX_LENGTH = _integer(
  'affix_length', 3, 'n of the prefix/suffix features.', lower_bound=1
)
GAZETTEER = _string(
  'gazetteer',
  None,
  'A file of TYPE<TAB>phrase lines added to the lists the gazetteer feature '
  'builds from the training labels (needs --features=...,gazetteer).',
)
CASE_AUGMENT = _float(
  'case_augment',
  0.0,
  'A fraction of the training documents added again, all lowercase or all '
  'uppercase (research/ner.py case_copies): casing that lowercased or '
  'all-caps text does not break (0: none).',
  lower_bound=0.0,
  upper_bound=1.0,
)
TAG_SCHEME = _enum(
  'tag_scheme',
  'file',
  tagschemes.SCHEMES,
  "Train on the file's tags, or on IOBES (decoded back to the file's).",
)
# What load_dataset reads.
DATA_CACHE = _string(
  'data_cache',
  os.environ.get('NER_DATA_CACHE', str(_run.REPO / '.cache' / 'data')),
  'Loaded datasets kept for runs on the same data, arguments and code '
  "(research/dataset_cache.py; '' for none; the NER_DATA_CACHE variable "
  'sets the default).',
)

DATA = (
  'data_dir',
  'data_cache',
  'embeddings',
  'vocab',
  'embed_dim',
  'features',
  'affix_length',
  'gazetteer',
  'tag_scheme',
  'window',
  'case_augment',
)

# --- Model. -----------------------------------------------------------------

MODEL = _enum(
  'model',
  'hidden',
  model_lib.MODELS,
  'softmax: f = Wx + c; hidden: f = W g(Vx + b) + c.',
)
NONLINEARITY = _enum(
  'nonlinearity', 'tanh', model_lib.NONLINEARITIES, 'g of the hidden layer.'
)
WINDOW = _integer(
  'window', 2, 'Half-width k: 2k+1 words a window.', lower_bound=0
)
HIDDEN = _integer('hidden', 300, 'Hidden units.', lower_bound=1)
DROPOUT = _float(
  'dropout',
  0.0,
  'Dropout rate on x and the hidden layer.',
  lower_bound=0.0,
  upper_bound=0.95,
)
FEATURE_DIM = _integer(
  'feature_dim',
  20,
  'Columns of each feature vector (--features).',
  lower_bound=1,
)
CHAR_DIM = _integer(
  'char_dim',
  16,
  'Columns of each character vector (--features=...,chars).',
  lower_bound=1,
)
CHAR_FILTERS = _integer(
  'char_filters',
  30,
  "The character CNN's filters: the features it gives each word.",
  lower_bound=1,
)
CHAR_WIDTH = _integer(
  'char_width',
  3,
  "The character CNN's filter width in characters (odd).",
  lower_bound=1,
)
# What model_config reads.
MODEL_FLAGS = (
  'model',
  'nonlinearity',
  'window',
  'hidden',
  'dropout',
  'feature_dim',
  'char_dim',
  'char_filters',
  'char_width',
)

# --- Training. --------------------------------------------------------------

OPTIMIZER = _enum('optimizer', 'adam', classifier.OPTIMIZERS, 'Optimizer.')
LR = _float('lr', 1e-3, 'Learning rate.', lower_bound=0.0)
BATCH_SIZE = _integer('batch_size', 256, 'Windows per step.', lower_bound=1)
EPOCHS = _integer('epochs', 10, 'Passes over the training data.', lower_bound=1)
EVAL_EVERY = _integer(
  'eval_every', 0, 'Evaluate every N steps (0: every epoch).', lower_bound=0
)
L2 = _float('l2', 0.0, 'lambda of lambda/2 ||theta||^2.', lower_bound=0.0)
L2_EMBEDDINGS = _bool(
  'l2_embeddings',
  False,
  'L2 also covers word and casing vectors.',
)
L2_BIASES = _bool('l2_biases', False, 'L2 also covers biases.')
FREEZE = _bool(
  'freeze_embeddings',
  False,
  'Keep the word vectors fixed.',
)
SPARSE = _bool(
  'sparse',
  True,
  'Update only the rows of L a batch touches.',
)
GRAD = _enum(
  'grad',
  'autodiff',
  ['autodiff', 'manual'],
  'jax.grad, or the hand-derived backprop.',
)
WORD_DROPOUT = _float(
  'word_dropout',
  0.0,
  'Training reads <unk> for a word with this probability.',
  lower_bound=0.0,
  upper_bound=0.95,
)
DECODE = _enum(
  'decode',
  'argmax',
  ner.DECODES,
  'Window-level objectives: the best tag of each word, or the best valid '
  'tag sequence (Viterbi). Sentence-level ones always use Viterbi.',
)
SEED = _integer(
  'seed',
  0,
  'Random seed: of the initialization and the shuffling of a training (of '
  "gradcheck's random problems).",
)
# What train_config reads.
TRAINING = (
  'optimizer',
  'batch_size',
  'l2_embeddings',
  'l2_biases',
  'freeze_embeddings',
  'sparse',
  'grad',
  'word_dropout',
  'dropout',
)

# --- The run directory, checkpoints, devices and processes. -----------------

WORKDIR = _string(
  'workdir',
  None,
  'Output directory (default runs/<entry>-<time>).',
)
OVERWRITE = _bool(
  'overwrite',
  False,
  'Replace what an earlier run left: an existing --output file, or the '
  'files of the run in --workdir, which are moved into '
  '--workdir/.previous-run/ (replacing what is there) before anything new '
  'is written.',
)
RESUME = _bool(
  'resume',
  False,
  'Continue the run in --workdir from its newest complete checkpoint (pass '
  'the flags it was started with).',
)
CHECKPOINT_EVERY = _integer(
  'checkpoint_every',
  0,
  'Save the training state every this many steps (0: at every evaluation).',
  lower_bound=0,
)
CHECKPOINTS = _bool('checkpoints', True, 'Write checkpoints.')
KEEP_CHECKPOINTS = _integer(
  'keep_checkpoints', 3, 'Checkpoints kept per training.', lower_bound=1
)
MESH = _string(
  'mesh',
  'auto',
  'Devices as CxD: C share out the configurations of a sweep or ensemble, '
  'D split each batch (auto: all on C for several configurations, on D for '
  'one).',
)
COORDINATOR = _string(
  'coordinator',
  None,
  'host:port of process 0, to train as one of --num_processes processes '
  '(jax.distributed).',
)
NUM_PROCESSES = _integer(
  'num_processes', None, 'Processes in all (with --coordinator).', 1
)
PROCESS_ID = _integer(
  'process_id', None, "This process's index (with --coordinator).", 0
)
DISTRIBUTED = _bool(
  'distributed',
  False,
  "jax.distributed with the cluster's own detection (SLURM, TPU pods); "
  'or pass --coordinator, --num_processes and --process_id.',
)
COMPILATION_CACHE = _string(
  'compilation_cache',
  str(_run.REPO / '.cache' / 'jax'),
  "JAX's persistent compilation cache: a run of a program compiled before "
  "(same shapes and options) loads it instead ('' for none; the "
  'JAX_COMPILATION_CACHE_DIR variable, when set, wins).',
)
MATMUL_PRECISION = _enum(
  'matmul_precision',
  'default',
  ['default', 'float32', 'tensorfloat32', 'bfloat16'],
  "float32 matrix products: the backend's default (full float32 on a "
  'CPU, TF32 on an NVIDIA GPU, bfloat16 passes on a TPU), or as named.',
)
RUN_DIR = ('workdir', 'overwrite')
CHECKPOINTING = (
  'resume',
  'checkpoint_every',
  'checkpoints',
  'keep_checkpoints',
)
DEVICES = (
  'mesh',
  'coordinator',
  'num_processes',
  'process_id',
  'distributed',
  'compilation_cache',
  'matmul_precision',
)

# --- A trained model. -------------------------------------------------------

MODEL_DIR = _string(
  'model_dir',
  None,
  'The --workdir of an experiments.train run.',
)
O_BIAS = _float(
  'o_bias',
  None,
  "Decode with this bias against O instead of the model's (config.json's "
  'o_bias: 0 unless trained with --tune_o_bias); > 0 finds more entities.',
)
SPLIT = _enum(
  'split',
  None,
  ['train', 'dev', 'test', 'all'],
  'Of a single-file corpus (a CoNLL file alone in its directory, which '
  'train splits 80/10/10 by documents): which split to read (default '
  'test); other files are read whole.',
)

_run.SHARED_FLAGS.update(_SPECS)
