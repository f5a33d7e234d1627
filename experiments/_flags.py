"""The entry points' command line: every shared flag, defined once.

Not an entry point. Each flag below is written once, with its bounds, so
that every experiment spells and checks it the same way. An entry point
takes the ones it reads with `_flag_spec.use(...)` when it is imported: they are
defined then as its own flags, so its --help lists them with their
defaults, and a flag it does not read is refused as unknown.

List flags (--seeds, --l2s, --batch_sizes, ...) are defined by
`_flag_spec.define_list`, which checks every item, when the flags are
parsed, with the parser of a scalar flag here: --l2s with the bounds of
--l2, --seeds with those of --seed, so `sweep --l2s=-1` is refused as
`train --l2=-1` is.

Values are read through the holders (`LR.value`; `_flag_spec.items(holder)`
gives a list flag's parsed items); how a flag is declared is
experiments/_flag_spec.py. experiments/_configs.py builds the library's
configurations from the flags; the run plumbing (errors, exit codes, the
run directory) is experiments/_run.py.
"""

import os

from absl import flags

from experiments import _flag_spec
from experiments import _run
from research import setup as setup_lib
from research.data import features as features_lib
from research.data import tagschemes
from research.formulas import model as model_lib
from research.training import classifier

DEFAULT_DATA_DIR = str(_run.REPO / 'data' / 'wikigold')


# --- Data. ------------------------------------------------------------------

DATA_DIR = _flag_spec.string(
  'data_dir',
  DEFAULT_DATA_DIR,
  'CoNLL directory (train/dev[/test] files, or one file to split 80/10/10 '
  'by documents: document i is dev when i % 10 == 8, test when i % 10 == 9).',
)
EMBEDDINGS = _flag_spec.string(
  'embeddings',
  'glove',
  "'glove' (GloVe 6B 50d, offline), 'random', or a GloVe/word2vec text file.",
)
VOCAB = _flag_spec.enum(
  'vocab',
  'data',
  ['data', 'pretrained'],
  "'data': training words + dev/test words with a pretrained vector; "
  "'pretrained': also every pretrained word (400k for GloVe).",
)
EMBED_DIM = _flag_spec.integer(
  'embed_dim', 50, 'd for --embeddings=random.', lower_bound=1
)
FEATURES = _flag_spec.list_of(
  'features',
  flags.EnumParser([*features_lib.KINDS, 'chars']),
  [],
  'Token features beside the word vector, any of '
  f'{",".join(features_lib.KINDS)} (research/data/features.py), and chars: '
  'a character CNN per word (research/formulas/chars.py; --char_dim, '
  '--char_filters, --char_width).',
  allow_empty=True,
)
AFFIX_LENGTH = _flag_spec.integer(
  'affix_length', 3, 'n of the prefix/suffix features.', lower_bound=1
)
GAZETTEER = _flag_spec.string(
  'gazetteer',
  None,
  'A file of TYPE<TAB>phrase lines added to the lists the gazetteer feature '
  'builds from the training labels (needs --features=...,gazetteer).',
)
CASE_AUGMENT = _flag_spec.floating(
  'case_augment',
  0.0,
  'A fraction of the training documents added again, all lowercase or all '
  'uppercase (research/data/dataset.py case_copies): casing that lowercased or '
  'all-caps text does not break (0: none).',
  lower_bound=0.0,
  upper_bound=1.0,
)
TAG_SCHEME = _flag_spec.enum(
  'tag_scheme',
  'file',
  tagschemes.SCHEMES,
  "Train on the file's tags, or on IOBES (decoded back to the file's).",
)
# What load_dataset reads.
DATA_CACHE = _flag_spec.string(
  'data_cache',
  os.environ.get('NER_DATA_CACHE', str(_run.REPO / '.cache' / 'data')),
  'Loaded datasets kept for runs on the same data, arguments and code '
  "(research/data/cache.py; '' for none; the NER_DATA_CACHE variable "
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

MODEL = _flag_spec.enum(
  'model',
  'hidden',
  model_lib.MODELS,
  'softmax: f = Wx + c; hidden: f = W g(Vx + b) + c; dilated: the hidden '
  "vectors of a sentence's words widened by dilated convolutions "
  '(--dilation_layers, --block_repeats; research/formulas/dilated.py), '
  'f = W h + c (trains on sentences).',
)
NONLINEARITY = _flag_spec.enum(
  'nonlinearity', 'tanh', model_lib.NONLINEARITIES, 'g of the hidden layer.'
)
WINDOW = _flag_spec.integer(
  'window', 2, 'Half-width k: 2k+1 words a window.', lower_bound=0
)
HIDDEN = _flag_spec.integer('hidden', 300, 'Hidden units.', lower_bound=1)
DROPOUT = _flag_spec.floating(
  'dropout',
  0.0,
  'Dropout rate on x and the hidden layer.',
  lower_bound=0.0,
  upper_bound=0.95,
)
FEATURE_DIM = _flag_spec.integer(
  'feature_dim',
  20,
  'Columns of each feature vector (--features).',
  lower_bound=1,
)
CHAR_DIM = _flag_spec.integer(
  'char_dim',
  16,
  'Columns of each character vector (--features=...,chars).',
  lower_bound=1,
)
CHAR_FILTERS = _flag_spec.integer(
  'char_filters',
  30,
  "The character CNN's filters: the features it gives each word.",
  lower_bound=1,
)
CHAR_WIDTH = _flag_spec.integer(
  'char_width',
  3,
  "The character CNN's filter width in characters (odd).",
  lower_bound=1,
)
DILATION_LAYERS = _flag_spec.integer(
  'dilation_layers',
  3,
  '--model=dilated: convolution layers of width 3 and dilations 1, 2, 4, ... '
  '(3 layers: a word reads 15 window centers).',
  lower_bound=1,
)
BLOCK_REPEATS = _flag_spec.integer(
  'block_repeats',
  1,
  '--model=dilated: applications of the block of layers, sharing its '
  'parameters.',
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
  'dilation_layers',
  'block_repeats',
)

# --- Training. --------------------------------------------------------------

OPTIMIZER = _flag_spec.enum(
  'optimizer', 'adam', classifier.OPTIMIZERS, 'Optimizer.'
)
LR = _flag_spec.floating('lr', 1e-3, 'Learning rate.', lower_bound=0.0)
BATCH_SIZE = _flag_spec.integer(
  'batch_size', 256, 'Windows per step.', lower_bound=1
)
EPOCHS = _flag_spec.integer(
  'epochs', 10, 'Passes over the training data.', lower_bound=1
)
EVAL_EVERY = _flag_spec.integer(
  'eval_every', 0, 'Evaluate every N steps (0: every epoch).', lower_bound=0
)
L2 = _flag_spec.floating(
  'l2', 0.0, 'lambda of lambda/2 ||theta||^2.', lower_bound=0.0
)
L2_EMBEDDINGS = _flag_spec.boolean(
  'l2_embeddings',
  False,
  'L2 also covers word and casing vectors.',
)
L2_BIASES = _flag_spec.boolean('l2_biases', False, 'L2 also covers biases.')
FREEZE = _flag_spec.boolean(
  'freeze_embeddings',
  False,
  'Keep the word vectors fixed.',
)
SPARSE = _flag_spec.boolean(
  'sparse',
  True,
  'Update only the rows of L a batch touches.',
)
GRAD = _flag_spec.enum(
  'grad',
  'autodiff',
  ['autodiff', 'manual'],
  'jax.grad, or the hand-derived backprop.',
)
WORD_DROPOUT = _flag_spec.floating(
  'word_dropout',
  0.0,
  'Training reads <unk> for a word with this probability.',
  lower_bound=0.0,
  upper_bound=0.95,
)
LR_DECAY = _flag_spec.floating(
  'lr_decay',
  0.0,
  'Epoch e (from 0) trains at lr / (1 + lr_decay * e); 0: a constant lr.',
  lower_bound=0.0,
)
DECODE = _flag_spec.enum(
  'decode',
  'argmax',
  setup_lib.DECODES,
  'Window-level objectives: the best tag of each word, or the best valid '
  'tag sequence (Viterbi). Sentence-level ones always use Viterbi.',
)
SEED = _flag_spec.integer(
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
  'lr_decay',
  'dropout',
)

# --- The run directory, checkpoints, devices and processes. -----------------

WORKDIR = _flag_spec.string(
  'workdir',
  None,
  'Output directory (default runs/<entry>-<time>).',
)
OVERWRITE = _flag_spec.boolean(
  'overwrite',
  False,
  'Replace what an earlier run left: an existing --output file, or the '
  'files of the run in --workdir, which are moved into a new '
  '--workdir/.previous-run-N/ before anything new is written (kept: none '
  'is ever deleted).',
)
RESUME = _flag_spec.boolean(
  'resume',
  False,
  'Continue the run in --workdir from its newest complete checkpoint (pass '
  'the flags it was started with).',
)
CHECKPOINT_EVERY = _flag_spec.integer(
  'checkpoint_every',
  0,
  'Save the training state every this many steps (0: at evaluations, '
  'see --checkpoint_seconds).',
  lower_bound=0,
)
CHECKPOINT_SECONDS = _flag_spec.floating(
  'checkpoint_seconds',
  30.0,
  'With --checkpoint_every=0: an evaluation saves only this many seconds '
  'after the previous save (the end of a training always saves), so a '
  'killed run loses at most this much training (0: at every evaluation).',
  lower_bound=0.0,
)
CHECKPOINTS = _flag_spec.boolean('checkpoints', True, 'Write checkpoints.')
KEEP_CHECKPOINTS = _flag_spec.integer(
  'keep_checkpoints', 3, 'Checkpoints kept per training.', lower_bound=1
)
MESH = _flag_spec.string(
  'mesh',
  'auto',
  'Devices as CxD: C share out the configurations of a sweep or ensemble, '
  'D split each batch (auto: all on C for several configurations, on D for '
  'one).',
)
COORDINATOR = _flag_spec.string(
  'coordinator',
  None,
  'host:port of process 0, to train as one of --num_processes processes '
  '(jax.distributed).',
)
NUM_PROCESSES = _flag_spec.integer(
  'num_processes', None, 'Processes in all (with --coordinator).', 1
)
PROCESS_ID = _flag_spec.integer(
  'process_id', None, "This process's index (with --coordinator).", 0
)
DISTRIBUTED = _flag_spec.boolean(
  'distributed',
  False,
  "jax.distributed with the cluster's own detection (SLURM, TPU pods); "
  'or pass --coordinator, --num_processes and --process_id.',
)
COMPILATION_CACHE = _flag_spec.string(
  'compilation_cache',
  str(_run.REPO / '.cache' / 'jax'),
  "JAX's persistent compilation cache: a run of a program compiled before "
  "(same shapes and options) loads it instead ('' for none; the "
  'JAX_COMPILATION_CACHE_DIR variable, when set, wins).',
)
MATMUL_PRECISION = _flag_spec.enum(
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
  'checkpoint_seconds',
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

MODEL_DIR = _flag_spec.string(
  'model_dir',
  None,
  'The --workdir of an experiments.train run.',
)
O_BIAS = _flag_spec.floating(
  'o_bias',
  None,
  "Decode with this bias against O instead of the model's (config.json's "
  'o_bias: 0 unless trained with --tune_o_bias); > 0 finds more entities.',
)
SPLIT = _flag_spec.enum(
  'split',
  None,
  ['train', 'dev', 'test', 'all'],
  'Of a single-file corpus (a CoNLL file alone in its directory, which '
  'train splits 80/10/10 by documents): which split to read (default '
  'test); other files are read whole.',
)

_run.SHARED_FLAGS.update(_flag_spec.SPECS)
