r"""Frozen vs fine-tuned word vectors as the training set grows.

  ./launch.sh freeze_vs_finetune
  ./launch.sh freeze_vs_finetune --data_dir=PATH/conll2003 --seeds=0,1

The study and its definitions are research/studies/frozen_vectors.py.
Writes into --workdir: flags.txt, results.json, results.csv, report.md and
freeze_vs_finetune.png.
"""

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.reports import frozen_vectors as report
from research.studies import frozen_vectors as study

# --freeze_embeddings is not one: the study trains both ways.
_flag_spec.use(
  _flags.DATA,
  _flags.MODEL_FLAGS,
  tuple(f for f in _flags.TRAINING if f != 'freeze_embeddings'),
  ('lr', 'epochs'),
  _flags.RUN_DIR,
  _flags.DEVICES,
)
_FRACTIONS = _flag_spec.define_list(
  'fractions',
  _flag_spec.FiniteFloat(lower_bound=0.0, upper_bound=1.0),
  ['0.01', '0.1', '1.0'],
  'Fractions of the training sentences to train on, each in (0, 1].',
)
_SEEDS = _flag_spec.define_list(
  'seeds',
  _flags.SEED,
  ['0', '1', '2', '3', '4'],
  'Seeds: each picks the training subset, the initialization of the layers '
  'and the shuffling (frozen and fine-tuned share it). Word vectors start '
  'from the same L for every seed (rows without a pretrained vector are '
  'drawn once, when the data are loaded).',
)
_MAX_EPOCHS = flags.DEFINE_integer(
  'fraction_max_epochs',
  200,
  'Most passes over a training subset (small fractions otherwise get '
  '--epochs / fraction passes).',
  lower_bound=1,
)


def main(_):
  fractions = sorted(set(_flag_spec.items(_FRACTIONS)))
  study.check_fractions(fractions)
  workdir = _run.workdir('freeze_vs_finetune')
  seeds = _flag_spec.items(_SEEDS)
  ds = _configs.load_dataset()
  model_cfg = _configs.model_config()
  cfg = _configs.train_config(freeze_embeddings=False)
  settings = dict(
    fractions=fractions,
    seeds=seeds,
    lr=_flags.LR.value,
    epochs=_flags.EPOCHS.value,
    max_epochs=_MAX_EPOCHS.value,
  )
  result = study.run(ds, model_cfg, cfg, log=_run.log, **settings)
  text = report.write_outputs(
    workdir,
    result,
    ds,
    model_cfg=model_cfg,
    cfg=cfg,
    data_dir=_flags.DATA_DIR.value,
    embeddings=_flags.EMBEDDINGS.value,
    **settings,
  )
  _run.log(
    f'\n{text}\n{len(result["runs"])} runs in '
    f'{result["seconds"]:.0f}s; wrote {workdir}'
  )


if __name__ == '__main__':
  _run.run(main)
