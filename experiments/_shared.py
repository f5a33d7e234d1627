"""What the entry points share: data, model and training flags, clean errors.

Not an entry point. The flags are defined once, here, so that every
experiment spells them the same way (`--data_dir`, `--embeddings`,
`--model`, ...); each entry point adds only its own (`--seed` for one seed,
`--seeds` for a list, everywhere).
"""

import pathlib
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax

from research import classifier
from research import features as features_lib
from research import model as model_lib
from research import ner
from research import parallel
from research import tagschemes
from research import workdir as workdir_lib
from research.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = str(REPO / 'data' / 'wikigold')

DATA_DIR = flags.DEFINE_string(
  'data_dir',
  DEFAULT_DATA_DIR,
  'CoNLL directory (train/dev[/test] files, or one file to split).',
)
EMBEDDINGS = flags.DEFINE_string(
  'embeddings',
  'glove',
  "'glove' (GloVe 6B 50d, offline), 'random', or a GloVe/word2vec text file.",
)
VOCAB = flags.DEFINE_enum(
  'vocab',
  'data',
  ['data', 'pretrained'],
  "'data': training words + dev/test words with a pretrained vector; "
  "'pretrained': also every pretrained word (400k for GloVe).",
)
EMBED_DIM = flags.DEFINE_integer('embed_dim', 50, 'd for --embeddings=random.')
MODEL = flags.DEFINE_enum(
  'model',
  'hidden',
  list(model_lib.MODELS),
  'softmax: f = Wx + c; hidden: f = W g(Vx + b) + c.',
)
NONLINEARITY = flags.DEFINE_enum(
  'nonlinearity',
  'tanh',
  list(model_lib.NONLINEARITIES),
  'g of the hidden layer.',
)
WINDOW = flags.DEFINE_integer(
  'window', 2, 'Half-width k: 2k+1 words a window.', lower_bound=0
)
HIDDEN = flags.DEFINE_integer('hidden', 300, 'Hidden units.', lower_bound=1)
L2_EMBEDDINGS = flags.DEFINE_bool(
  'l2_embeddings', False, 'L2 also covers word and casing vectors.'
)
L2_BIASES = flags.DEFINE_bool('l2_biases', False, 'L2 also covers biases.')
DROPOUT = flags.DEFINE_float(
  'dropout',
  0.0,
  'Dropout rate on x and the hidden layer.',
  lower_bound=0.0,
  upper_bound=0.95,
)
FREEZE = flags.DEFINE_bool(
  'freeze_embeddings', False, 'Keep the word vectors fixed.'
)
OPTIMIZER = flags.DEFINE_enum(
  'optimizer', 'adam', list(classifier.OPTIMIZERS), 'Optimizer.'
)
LR = flags.DEFINE_float('lr', 1e-3, 'Learning rate.', lower_bound=0.0)
BATCH_SIZE = flags.DEFINE_integer(
  'batch_size', 256, 'Windows per step.', lower_bound=1
)
EPOCHS = flags.DEFINE_integer(
  'epochs', 10, 'Passes over the training data.', lower_bound=1
)
EVAL_EVERY = flags.DEFINE_integer(
  'eval_every', 0, 'Evaluate every N steps (0: every epoch).', lower_bound=0
)
SPARSE = flags.DEFINE_bool(
  'sparse', True, 'Update only the rows of L a batch touches.'
)
GRAD = flags.DEFINE_enum(
  'grad',
  'autodiff',
  ['autodiff', 'manual'],
  'jax.grad, or the hand-derived backprop.',
)
FEATURE_DIM = flags.DEFINE_integer(
  'feature_dim',
  20,
  'Columns of each feature vector (--features).',
  lower_bound=1,
)
FEATURES = flags.DEFINE_list(
  'features',
  [],
  'Token features beside the word vector, any of '
  f'{",".join(features_lib.KINDS)} (research/features.py).',
)
AFFIX_LENGTH = flags.DEFINE_integer(
  'affix_length', 3, 'n of the prefix/suffix features.', lower_bound=1
)
GAZETTEER = flags.DEFINE_string(
  'gazetteer',
  None,
  'A file of TYPE<TAB>phrase lines added to the lists the gazetteer feature '
  'builds from the training labels (needs --features=...,gazetteer).',
)
TAG_SCHEME = flags.DEFINE_enum(
  'tag_scheme',
  'file',
  list(tagschemes.SCHEMES),
  "Train on the file's tags, or on IOBES (decoded back to the file's).",
)
DECODE = flags.DEFINE_enum(
  'decode',
  'argmax',
  list(ner.DECODES),
  'Window-level objectives: the best tag of each word, or the best valid '
  'tag sequence (Viterbi). Sentence-level ones always use Viterbi.',
)
WORD_DROPOUT = flags.DEFINE_float(
  'word_dropout',
  0.0,
  'Training reads <unk> for a word with this probability.',
  lower_bound=0.0,
  upper_bound=0.95,
)
WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Output directory (default runs/<entry>-<time>).'
)
OVERWRITE = flags.DEFINE_bool(
  'overwrite', False, 'Replace the files of an earlier run in --workdir.'
)
RESUME = flags.DEFINE_bool(
  'resume',
  False,
  'Continue the run in --workdir from its newest complete checkpoint (train '
  'and sweep; pass the flags it was started with).',
)
CHECKPOINT_EVERY = flags.DEFINE_integer(
  'checkpoint_every',
  0,
  'Save the training state every this many steps (0: at every evaluation; '
  'train and sweep).',
  lower_bound=0,
)
CHECKPOINTS = flags.DEFINE_bool(
  'checkpoints', True, 'Write checkpoints (train and sweep).'
)
MESH = flags.DEFINE_string(
  'mesh',
  'auto',
  'Devices as CxD: C share out the configurations of a sweep or ensemble, '
  'D split each batch (auto: all on C for several configurations, on D for '
  'one).',
)
COORDINATOR = flags.DEFINE_string(
  'coordinator',
  None,
  'host:port of process 0, to train as one of --num_processes processes '
  '(jax.distributed).',
)
NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'Processes in all (with --coordinator).'
)
PROCESS_ID = flags.DEFINE_integer(
  'process_id', None, "This process's index (with --coordinator)."
)
DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  "jax.distributed with the cluster's own detection (SLURM, TPU pods); "
  'or pass --coordinator, --num_processes and --process_id.',
)
KEEP_CHECKPOINTS = flags.DEFINE_integer(
  'keep_checkpoints', 3, 'Checkpoints kept per training.', lower_bound=1
)


def run(main):
  """absl.app.run(main), printing a UserError as one line and exiting 2."""

  def guarded(argv):
    # Progress is printed as lines of our own; libraries' info logs (orbax
    # logs each checkpoint) are left out.
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
      print(
        f'error: unexpected arguments {" ".join(argv[1:])!r}; flags are '
        'written --name=value',
        file=sys.stderr,
      )
      sys.exit(2)
    try:
      _start_processes()
      with parallel.use_mesh(MESH.value):
        return main(argv)
    except UserError as e:
      workdir_lib.release_unused()
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)

  app.run(guarded)


def _start_processes():
  """jax.distributed.initialize when asked (before anything touches JAX)."""
  given = [
    f
    for f in ('coordinator', 'num_processes', 'process_id')
    if flags.FLAGS[f].value is not None
  ]
  if given and len(given) < 3:
    raise UserError(
      '--coordinator, --num_processes and --process_id go together; pass '
      'all three (or --distributed for the cluster to say)'
    )
  if given or DISTRIBUTED.value:
    parallel.initialize(
      COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value
    )


def workdir(name, checkpoints=False):
  """--workdir (default runs/<name>-<time>), claimed before any work starts
  (workdir.claim): one another run is using is refused, and so is one
  holding an earlier run's files unless --overwrite or --resume.
  checkpoints: whether this entry point writes checkpoints (and resumes)."""
  if not checkpoints:
    given = [f'--{f}' for f in ('resume',) if flags.FLAGS[f].present]
    if given:
      raise UserError(
        f'{given[0]}: ./launch.sh {name} does not checkpoint; only train '
        'and sweep resume'
      )
  path = WORKDIR.value or str(
    REPO / 'runs' / f'{name}-{time.strftime("%Y%m%d-%H%M%S")}'
  )
  if WORKDIR.value is None and jax.process_count() > 1:
    raise UserError('several processes write one run: pass its --workdir')
  if jax.process_index() != 0:
    # Results are written by process 0; the others write into a scratch
    # directory of their own, thrown away.
    global _real_workdir
    _real_workdir = pathlib.Path(path)
    return pathlib.Path(tempfile.mkdtemp(prefix=f'{name}-process-'))
  return workdir_lib.claim(path, OVERWRITE.value, RESUME.value)


_real_workdir = None  # the run's --workdir on a process other than 0


def checkpointer(path):
  """The run's research.checkpoint.Checkpointer (None with --nocheckpoints).
  A new run (not --resume) starts from no checkpoint: those of a run it
  --overwrite-s are removed first."""
  from research import checkpoint  # noqa: PLC0415 (orbax loads slowly)

  # Every process checkpoints its shards into the run's own directory.
  directory = pathlib.Path(_real_workdir or path) / 'checkpoints'
  if not RESUME.value and directory.exists() and jax.process_index() == 0:
    shutil.rmtree(directory)
  if not CHECKPOINTS.value:
    if RESUME.value:
      raise UserError('--resume needs checkpoints; drop --nocheckpoints')
    return None
  return checkpoint.Checkpointer(
    directory,
    CHECKPOINT_EVERY.value,
    KEEP_CHECKPOINTS.value,
    resume=RESUME.value,
  )


def save_flags(path):
  """Creates the run directory and writes the resolved flags into it,
  headed by the entry point's name (a comment in a --flagfile)."""
  path.mkdir(parents=True, exist_ok=True)
  # Left out: absl's own flags (--verbosity, --pdb, ...), and where this run
  # was written: a run repeated with --flagfile=W/flags.txt names its own
  # --workdir and can never overwrite W by accident.
  # --resume is left out too: the resumed run's flags must equal these.
  lines = [
    f.serialize()
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
    if not module.startswith('absl')
    for f in sorted(module_flags, key=lambda f: f.name)
    if f.value is not None and f.name not in ('workdir', 'overwrite', 'resume')
  ]
  entry = pathlib.Path(sys.argv[0]).stem
  text = f'# ./launch.sh {entry}\n' + '\n'.join(lines) + '\n'
  saved = path / 'flags.txt'
  if RESUME.value:
    before = saved.read_text().splitlines()
    now = text.splitlines()
    changed = sorted(
      {line.split('=')[0] for line in set(before) ^ set(now)} - {''}
    )
    if changed:
      raise UserError(
        f'--resume: {", ".join(changed)} differ from {saved}; resume with '
        f'the flags the run was started with (--flagfile={saved})'
      )
    return
  saved.write_text(text)


def parse_list(values, kind, name):
  """Converts a list flag's strings, or says in one line which flag is off."""
  try:
    parsed = [kind(v) for v in values]
  except ValueError:
    raise UserError(
      f'--{name}={",".join(values)}: expected a comma-separated '
      f'list of {kind.__name__} values'
    ) from None
  if not parsed:
    raise UserError(f'--{name} is empty; give at least one value')
  return parsed


def log(line):
  """A progress line (from process 0 only, when several train together)."""
  if jax.process_index() == 0:
    print(line, flush=True)


def load_dataset(**overrides):
  kw = dict(
    data_dir=DATA_DIR.value,
    embeddings=EMBEDDINGS.value,
    window=WINDOW.value,
    vocab=VOCAB.value,
    embed_dim=EMBED_DIM.value,
    log=log,
    features=tuple(FEATURES.value),
    affix_length=AFFIX_LENGTH.value,
    tag_scheme=TAG_SCHEME.value,
    gazetteer_file=GAZETTEER.value,
  )
  kw.update(overrides)
  if kw['gazetteer_file'] and 'gazetteer' not in kw['features']:
    raise UserError(
      f'--gazetteer={kw["gazetteer_file"]} is read by the gazetteer feature; '
      'add gazetteer to --features'
    )
  unknown = set(kw['features']) - set(features_lib.KINDS)
  if unknown:
    raise UserError(
      f'--features={",".join(kw["features"])}: unknown '
      f'{", ".join(sorted(unknown))}; choose from '
      f'{",".join(features_lib.KINDS)}'
    )
  return ner.load_dataset(**kw)


def check_batch_size(ds):
  """Refuses a --batch_size larger than the training windows, before the
  run directory is written (entry points that train on all of them)."""
  num_train = len(ds.windows['train'].labels)
  if BATCH_SIZE.value > num_train:
    raise UserError(
      f'--batch_size={BATCH_SIZE.value} is larger than the '
      f'{num_train:,} training windows of {DATA_DIR.value}; '
      'pass a smaller --batch_size'
    )


def model_config(**overrides):
  kw = dict(
    model=MODEL.value,
    nonlinearity=NONLINEARITY.value,
    window=WINDOW.value,
    hidden=HIDDEN.value,
    dropout=DROPOUT.value,
    feature_dim=FEATURE_DIM.value,
  )
  kw.update(overrides)
  return model_lib.ModelConfig(**kw)


def train_config(**overrides):
  kw = dict(
    optimizer=OPTIMIZER.value,
    batch_size=BATCH_SIZE.value,
    l2_embeddings=L2_EMBEDDINGS.value,
    l2_biases=L2_BIASES.value,
    freeze_embeddings=FREEZE.value,
    sparse=SPARSE.value,
    grad=GRAD.value,
    word_dropout=WORD_DROPOUT.value,
  )
  kw.update(overrides)
  cfg = classifier.TrainConfig(**kw)
  if cfg.grad == 'manual' and DROPOUT.value > 0:
    raise UserError('--grad=manual has no dropout; pass --dropout=0')
  return cfg
