"""The library's configurations, from the entry points' flags.

Not an entry point. `load_dataset`, `model_config` and `train_config` build
research's settings from the flags of experiments/_flags.py (keywords
override them), and refuse in one line what the library cannot serve;
`corpus_split` says which part of a CoNLL file evaluate and predict read.
"""

import dataclasses
import os
import sys

from absl import flags

from experiments import _flags
from experiments import _run
from research import workdir as workdir_lib
from research.data import conll as data_lib
from research.data import dataset as dataset_lib
from research.data import features as features_lib
from research.errors import UserError
from research.evaluation import tagging
from research.formulas import model as model_lib
from research.training import classifier


def load_dataset(**overrides):
  """research.data.dataset.load_dataset with the data flags (_flags.DATA);
  `overrides` replace their values (a flag overridden need not be the entry
  point's)."""
  kw = _from_flags(
    dict(
      data_dir=_flags.DATA_DIR,
      embeddings=_flags.EMBEDDINGS,
      window=_flags.WINDOW,
      vocab=_flags.VOCAB,
      embed_dim=_flags.EMBED_DIM,
      features=_flags.FEATURES,
      affix_length=_flags.AFFIX_LENGTH,
      tag_scheme=_flags.TAG_SCHEME,
      gazetteer_file=_flags.GAZETTEER,
      case_augment=_flags.CASE_AUGMENT,
      cache_dir=_flags.DATA_CACHE,
    ),
    overrides,
  )
  kw['cache_dir'] = kw['cache_dir'] or None
  kw['features'] = tuple(kw['features'])
  if kw['gazetteer_file'] and 'gazetteer' not in kw['features']:
    raise UserError(
      f'--gazetteer={kw["gazetteer_file"]} is read by the gazetteer feature; '
      'add gazetteer to --features'
    )
  unknown = set(kw['features']) - {*features_lib.KINDS, 'chars'}
  if unknown:  # overrides (bench's --best file); the flag is checked itself
    raise UserError(
      f'features {",".join(kw["features"])}: unknown '
      f'{", ".join(sorted(unknown))}; choose from '
      f'{",".join([*features_lib.KINDS, "chars"])}'
    )
  # Document context is a transform of the Dataset (two_passes.prepare),
  # applied by what trains: see `document_context`.
  kw['features'] = tuple(f for f in kw['features'] if f != 'document')
  return dataset_lib.load_dataset(log=_run.log, **kw)


def document_context(features=None):
  """Whether --features (or `features`) asks for document context."""
  return 'document' in (_flags.FEATURES.value if features is None else features)


def check_batch_size(ds):
  """Refuses a --batch_size larger than the training windows, before
  training (entry points that train on all of them)."""
  num_train = len(ds.windows['train'].labels)
  if _flags.BATCH_SIZE.value > num_train:
    raise UserError(
      f'--batch_size={_flags.BATCH_SIZE.value} is larger than the '
      f'{num_train:,} training windows of {_flags.DATA_DIR.value}; '
      'pass a smaller --batch_size'
    )


def corpus_split(path, model_dir):
  """The --split to read of the CoNLL file `path` with the model in
  `model_dir`: --split when given (of a single-file corpus: a file alone
  in its directory, which train splits 80/10/10 by documents); by default,
  of the single-file corpus the model was trained on, 'test', said in one
  line on stderr (its other documents are the model's training data); of
  any other file None (all of it)."""
  split = _flags.SPLIT.value
  if not os.path.isfile(path):
    return None  # reading it says what is wrong
  if not data_lib.is_single_file_corpus(path):
    if split not in (None, 'all'):
      raise UserError(
        f'--split={split}: {path} is not a single-file corpus (one file '
        'alone in its directory, which train splits by documents); it is '
        'read whole: drop --split'
      )
    return None
  if split is None and not _trained_on(model_dir, os.path.dirname(path)):
    return None
  split = split or 'test'
  rule = data_lib.SPLIT_RULE.get(split, 'every i')
  print(
    f'{path}: a single-file corpus, read as train splits it: its {split} '
    f'split, documents i with {rule} (--split=train, dev, test or all)',
    file=sys.stderr,
  )
  return split


def _trained_on(model_dir, data_dir):
  """Whether the run in model_dir was trained on data_dir (its flags.txt's
  --data_dir, or the default data)."""
  given = (
    workdir_lib.saved_flag(model_dir, 'data_dir') or _flags.DEFAULT_DATA_DIR
  )
  trained = os.path.join(str(_run.REPO), given)  # relative: to the repo
  return os.path.realpath(trained) == os.path.realpath(data_dir)


def _from_flags(holders, overrides):
  """{name: value} of the holders' flags, `overrides` in their place (a
  flag given an override need not be one of the entry point's)."""
  kw = {n: h.value for n, h in holders.items() if n not in overrides}
  return dict(kw, **overrides)


def model_config(**overrides):
  cfg = model_lib.ModelConfig(
    **_from_flags(
      dict(
        model=_flags.MODEL,
        nonlinearity=_flags.NONLINEARITY,
        window=_flags.WINDOW,
        hidden=_flags.HIDDEN,
        dropout=_flags.DROPOUT,
        feature_dim=_flags.FEATURE_DIM,
        char_dim=_flags.CHAR_DIM,
        char_filters=_flags.CHAR_FILTERS,
        char_width=_flags.CHAR_WIDTH,
        dilation_layers=_flags.DILATION_LAYERS,
        block_repeats=_flags.BLOCK_REPEATS,
      ),
      overrides,
    )
  )
  if cfg.char_width % 2 == 0:
    raise UserError(
      f'--char_width={cfg.char_width}: the character filters are centered '
      'on a character; pass an odd width (e.g. 3)'
    )
  return cfg


def train_config(**overrides):
  kw = _from_flags(
    dict(
      optimizer=_flags.OPTIMIZER,
      batch_size=_flags.BATCH_SIZE,
      l2_embeddings=_flags.L2_EMBEDDINGS,
      l2_biases=_flags.L2_BIASES,
      freeze_embeddings=_flags.FREEZE,
      sparse=_flags.SPARSE,
      grad=_flags.GRAD,
      word_dropout=_flags.WORD_DROPOUT,
      lr_decay=_flags.LR_DECAY,
      mesh=_flags.MESH,
    ),
    overrides,
  )
  cfg = classifier.TrainConfig(**kw)
  dropout = _flags.DROPOUT.value if 'dropout' in flags.FLAGS else 0.0
  if cfg.grad == 'manual' and dropout > 0:
    raise UserError('--grad=manual has no dropout; pass --dropout=0')
  return cfg


def trained_model():
  """tagging.load of --model_dir, decoding with --o_bias when given."""
  model = tagging.load(_flags.MODEL_DIR.value)
  if _flags.O_BIAS.value is not None:
    model = dataclasses.replace(model, o_bias=_flags.O_BIAS.value)
  return model
