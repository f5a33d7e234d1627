r"""The deck's window max-margin against a logistic classifier, same scorer.

  ./launch.sh window_margin
  ./launch.sh window_margin --negatives=corrupt,corrupt+real
  ./launch.sh window_margin --seeds=0,1,2 --entity_type=PER
  ./launch.sh window_margin --data_dir=../shared/data/conll2003

The study (task, objectives, scores) is research/studies/margin_vs_logistic.py.
Writes into --workdir: flags.txt, results.json, results.csv, report.md,
active_hinges.png, dev_f1.png. Of the model and training flags it takes
those --help lists: the model is the scorer (no --model), word vectors get
dense updates (no --sparse), and it has no dropout, no L2 and no
hand-derived gradients.
"""

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.reports import margin_vs_logistic as report
from research.studies import margin_vs_logistic as study
from research.training import window_scorer

_flag_spec.use(
  _flags.DATA,
  ('nonlinearity', 'hidden', 'optimizer', 'lr', 'batch_size', 'epochs'),
  ('eval_every', 'freeze_embeddings'),
  _flags.RUN_DIR,
  _flags.DEVICES,
)
_ENTITY_TYPE = flags.DEFINE_string(
  'entity_type',
  'LOC',
  'T: detect an entity of type T (tag X-T) at the window center.',
)
_NUM_CORRUPT = flags.DEFINE_integer(
  'num_corrupt', 5, 'M: corrupt windows per true window.', lower_bound=1
)
_NEGATIVES = _flag_spec.define_list(
  'negatives',
  flags.EnumParser(list(window_scorer.NEGATIVES)),
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
_SEEDS = _flag_spec.define_list(
  'seeds', _flags.SEED, ['0'], 'Seeds (initialization and batch sampling).'
)


def main(_):
  workdir = _run.workdir('window_margin')
  st = study.Settings(
    entity_type=_ENTITY_TYPE.value,
    negatives=study.check_negatives(_NEGATIVES.value),
    seeds=tuple(_flag_spec.items(_SEEDS)),
    num_corrupt=_NUM_CORRUPT.value,
    corrupt_casing=_CORRUPT_CASING.value,
    nonlinearity=_flags.NONLINEARITY.value,
    window=_flags.WINDOW.value,
    hidden=_flags.HIDDEN.value,
    optimizer=_flags.OPTIMIZER.value,
    lr=_flags.LR.value,
    batch_size=_flags.BATCH_SIZE.value,
    epochs=_flags.EPOCHS.value,
    eval_every=_flags.EVAL_EVERY.value,
    freeze_embeddings=_flags.FREEZE.value,
    mesh=_flags.MESH.value,
  )
  ds = _configs.load_dataset(seed=st.seeds[0])
  study.check_entity_type(ds, st.entity_type)
  results, arrays = study.run(ds, st, log=_run.log)
  table = report.write_outputs(
    workdir,
    results,
    arrays,
    st,
    data_dir=_flags.DATA_DIR.value,
    embeddings=_flags.EMBEDDINGS.value,
  )
  _run.log(f'\n{table}\nwrote {workdir}')


if __name__ == '__main__':
  _run.run(main)
