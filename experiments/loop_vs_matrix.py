r"""A Python loop over word vectors vs one matrix product, NumPy and JAX.

  ./launch.sh loop_vs_matrix
  ./launch.sh loop_vs_matrix --data_dir=../shared/data/conll2003
  python -m experiments.loop_vs_matrix --timing_repeats=1 \
      --timing_min_seconds=0 --deck_vectors=50 --model_windows=100

Times the deck's example (--deck_classes x --deck_dim weights, --deck_vectors
word vectors) and the window model's scores over the dev windows of
--data_dir (its vocabulary and word vectors; the model flags), each as a
loop, `jax.lax.map`, `jax.vmap` and one matrix product. What is timed and
how: research/studies/vectorization.py.
Writes flags.txt, results.json and report.md into --workdir.
"""

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.reports import vectorization as vectorization_report
from research.studies import vectorization

# Scoring has no dropout: --dropout is not one of its flags.
_flag_spec.use(
  _flags.DATA,
  ('model', 'nonlinearity', 'window', 'hidden', 'feature_dim'),
  ('char_dim', 'char_filters', 'char_width', 'dilation_layers'),
  ('block_repeats',),
  _flags.RUN_DIR,
)
_DECK_CLASSES = flags.DEFINE_integer(
  'deck_classes', 5, 'C: rows of W in the deck example.', lower_bound=1
)
_DECK_DIM = flags.DEFINE_integer(
  'deck_dim', 300, 'd: word vector size in the deck example.', lower_bound=1
)
_DECK_VECTORS = flags.DEFINE_integer(
  'deck_vectors', 500, 'N: word vectors in the deck example.', lower_bound=1
)
_MODEL_WINDOWS = flags.DEFINE_integer(
  'model_windows',
  0,
  'Dev windows scored by the window model (0: all of them).',
  lower_bound=0,
)
_TIMING_REPEATS = flags.DEFINE_integer(
  'timing_repeats', 5, 'Measurements per version (R).', lower_bound=1
)
_TIMING_MIN_SECONDS = _flag_spec.define_float(
  'timing_min_seconds',
  0.2,
  'Loops per measurement are doubled until one takes this long.',
  lower_bound=0.0,
)


def main(_):
  workdir = _run.workdir('loop_vs_matrix')
  model_cfg = _configs.model_config(dropout=0.0)
  ds = _configs.load_dataset()
  results = vectorization.run(
    ds,
    model_cfg,
    deck_classes=_DECK_CLASSES.value,
    deck_dim=_DECK_DIM.value,
    deck_vectors=_DECK_VECTORS.value,
    model_windows=_MODEL_WINDOWS.value,
    repeats=_TIMING_REPEATS.value,
    min_seconds=_TIMING_MIN_SECONDS.value,
    data_dir=_flags.DATA_DIR.value,
    log=_run.log,
  )
  _run.log('\n' + vectorization_report.write_outputs(workdir, results))
  _run.log(f'wrote {workdir}')


if __name__ == '__main__':
  _run.run(main)
