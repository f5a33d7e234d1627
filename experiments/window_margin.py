r"""The deck's window max-margin against a logistic classifier, same scorer.

  ./launch.sh window_margin
  ./launch.sh window_margin --negatives=corrupt,corrupt+real
  ./launch.sh window_margin --seeds=0,1,2 --entity_type=PER
  ./launch.sh window_margin --data_dir=../shared/data/conll2003

The study (task, objectives, scores) is research/studies/margin_vs_logistic.py.
Writes into --workdir: flags.txt, results.json, results.csv, report.md,
active_hinges.png, dev_f1.png. Of the shared flags, --model and --sparse
are ignored (the model is the scorer; word vectors get dense updates) and
--dropout, --grad=manual and the L2 flags are refused.
"""

from absl import flags

from experiments import _shared as common
from research import window_scorer
from research.errors import UserError
from research.studies import margin_vs_logistic as study
from research.studies import margin_vs_logistic_report as report

_ENTITY_TYPE = flags.DEFINE_string(
  'entity_type',
  'LOC',
  'T: detect an entity of type T (tag X-T) at the window center.',
)
_NUM_CORRUPT = flags.DEFINE_integer(
  'num_corrupt', 5, 'M: corrupt windows per true window.', lower_bound=1
)
_NEGATIVES = flags.DEFINE_list(
  'negatives',
  ['corrupt'],
  "Margin runs to make, comma-separated: 'corrupt' (the deck's: corrupt "
  "windows only) and/or 'corrupt+real' (also M real negative windows).",
)
_CORRUPT_CASING = flags.DEFINE_enum(
  'corrupt_casing',
  'word',
  list(window_scorer.CORRUPT_CASINGS),
  "Casing of a corrupt center: 'word' (the sampled word's most frequent "
  "casing in train) or 'keep' (the replaced word's).",
)
_SEEDS = flags.DEFINE_list(
  'seeds', ['0'], 'Seeds (initialization and batch sampling).'
)


def main(_):
  workdir = common.workdir('window_margin')
  unsupported = [
    name
    for name, on in (
      ('--dropout', common.DROPOUT.value > 0),
      ('--grad=manual', common.GRAD.value == 'manual'),
      ('--l2_embeddings', common.L2_EMBEDDINGS.value),
      ('--l2_biases', common.L2_BIASES.value),
    )
    if on
  ]
  if unsupported:
    raise UserError(
      f'{", ".join(unsupported)}: not supported by '
      'window_margin (no dropout, no L2, autodiff only); '
      'leave them at their defaults'
    )
  st = study.Settings(
    entity_type=_ENTITY_TYPE.value,
    negatives=study.check_negatives(_NEGATIVES.value),
    seeds=tuple(common.parse_list(_SEEDS.value, int, 'seeds')),
    num_corrupt=_NUM_CORRUPT.value,
    corrupt_casing=_CORRUPT_CASING.value,
    nonlinearity=common.NONLINEARITY.value,
    window=common.WINDOW.value,
    hidden=common.HIDDEN.value,
    optimizer=common.OPTIMIZER.value,
    lr=common.LR.value,
    batch_size=common.BATCH_SIZE.value,
    epochs=common.EPOCHS.value,
    eval_every=common.EVAL_EVERY.value,
    freeze_embeddings=common.FREEZE.value,
  )
  ds = common.load_dataset(seed=st.seeds[0])
  study.check_entity_type(ds, st.entity_type)
  common.save_flags(workdir)
  results, arrays = study.run(ds, st, log=common.log)
  table = report.write_outputs(
    workdir,
    results,
    arrays,
    st,
    data_dir=common.DATA_DIR.value,
    embeddings=common.EMBEDDINGS.value,
  )
  common.log(f'\n{table}\nwrote {workdir}')


if __name__ == '__main__':
  common.run(main)
