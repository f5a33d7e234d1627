r"""Training throughput against this machine's own matmul peak.

  ./launch.sh bench --data_dir=../shared/data/conll2003 --workdir=runs/bench

What is measured, side by side, is listed in research/studies/throughput.py.
Writes bench.json, bench.md and throughput.png into --workdir.
"""

import pathlib

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.errors import UserError
from research.reports import throughput as throughput_report
from research.studies import throughput
from research.training import two_passes

# Both vocabularies are timed: --vocab is not one of its flags.
_flag_spec.use(
  tuple(f for f in _flags.DATA if f != 'vocab'),
  _flags.MODEL_FLAGS,
  _flags.TRAINING,
  'lr',
  _flags.RUN_DIR,
  _flags.DEVICES,
)
_BATCH_SIZES = _flag_spec.define_list(
  'batch_sizes',
  _flags.BATCH_SIZE,
  ['64', '128', '256', '512', '1024', '2048', '4096'],
  'Batch sizes to time (256 must be one; --batch_size is that of --best).',
)
_BENCH_STEPS = flags.DEFINE_integer(
  'bench_steps',
  0,
  'Windows timed per measurement, in steps of the '
  'largest batch (0: one pass over the training windows).',
)
_SWEEP_CONFIGS = flags.DEFINE_integer(
  'sweep_configs', 8, 'Configurations in the stacked sweep.'
)
_PEAK_SECONDS = _flag_spec.define_float(
  'peak_seconds',
  1.0,
  'About how long each matmul size of the peak is timed.',
  lower_bound=0.0,
)
_REPEATS = flags.DEFINE_integer(
  'repeats', 3, 'Timed rounds (best is kept).', lower_bound=1
)
_BEST = flags.DEFINE_string(
  'best',
  str(_run.REPO / 'experiments' / 'configs' / 'conll_best.flags'),
  'A flag file of a sentence-level configuration to time beside the '
  "default ('' for none); its data, model and training flags are read.",
)

# The flags of --best that change what is timed (the rest are ignored).
_BEST_FLAGS = (
  'objective',
  'tag_scheme',
  'features',
  'feature_dim',
  'affix_length',
  'hidden',
  'window',
  'dropout',
  'word_dropout',
  'batch_size',
)


def _read_best(path):
  """{flag: value} of the flag file's --name=value lines."""
  try:
    lines = pathlib.Path(path).read_text().splitlines()
  except OSError as e:
    raise UserError(
      f'--best={path}: {e.strerror}; pass a flag file or --best='
    ) from None
  values = {}
  for line in lines:
    name, eq, value = line.strip().lstrip('-').partition('=')
    if line.startswith('--') and eq and name in _BEST_FLAGS:
      values[name] = value
  return values


def _best_configuration(path):
  """(name, Dataset, ModelConfig, TrainConfig) of the --best flag file."""
  v = _read_best(path)
  features = tuple(f for f in v.get('features', '').split(',') if f)
  ds = _configs.load_dataset(
    features=features,
    tag_scheme=v.get('tag_scheme', 'file'),
    affix_length=int(v.get('affix_length', 3)),
    vocab='data',
  )
  if _configs.document_context(features):
    # Timed as the second pass reads it (no first pass is trained here).
    ds = two_passes.with_unread_document(ds)
  model_cfg = _configs.model_config(
    hidden=int(v.get('hidden', _flags.HIDDEN.value)),
    window=int(v.get('window', _flags.WINDOW.value)),
    dropout=float(v.get('dropout', 0.0)),
    feature_dim=int(v.get('feature_dim', _flags.FEATURE_DIM.value)),
  )
  cfg = _configs.train_config(
    objective=v.get('objective', 'xent'),
    batch_size=int(v.get('batch_size', _flags.BATCH_SIZE.value)),
    word_dropout=float(v.get('word_dropout', 0.0)),
  )
  return pathlib.Path(path).stem, ds, model_cfg, cfg


def main(_):
  batch_sizes = _flag_spec.items(_BATCH_SIZES)
  throughput.check_batch_sizes(batch_sizes)
  workdir = _run.workdir('bench')
  datasets = {
    vocab: _configs.load_dataset(vocab=vocab)
    for vocab in ('data', 'pretrained')
  }
  sentence = _BEST.value and _best_configuration(_BEST.value)
  out = throughput.run(
    datasets,
    _configs.model_config(),
    _configs.train_config(),
    lr=_flags.LR.value,
    batch_sizes=batch_sizes,
    bench_steps=_BENCH_STEPS.value,
    sweep_configs=_SWEEP_CONFIGS.value,
    repeats=_REPEATS.value,
    log=_run.log,
    sentence=sentence or None,
    peak_seconds=_PEAK_SECONDS.value,
  )
  summary = throughput_report.write_outputs(workdir, out)
  _run.log(f'\n{summary}\nwrote {workdir}/bench.md')


if __name__ == '__main__':
  _run.run(main)
