r"""Frozen vs fine-tuned word vectors as the training set grows.

  ./launch.sh freeze_vs_finetune
  ./launch.sh freeze_vs_finetune --data_dir=PATH/conll2003 --seeds=0,1

The study and its definitions are research/studies/frozen_vectors.py.
Writes into --workdir: flags.txt, results.json, results.csv, report.md and
freeze_vs_finetune.png.
"""

from absl import flags

from experiments import _shared as common
from research.studies import frozen_vectors as study
from research.studies import frozen_vectors_report as report

_FRACTIONS = flags.DEFINE_list(
  'fractions',
  ['0.01', '0.1', '1.0'],
  'Fractions of the training sentences to train on, each in (0, 1].',
)
_SEEDS = flags.DEFINE_list(
  'seeds',
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
  workdir = common.workdir('freeze_vs_finetune')
  fractions = sorted(
    set(common.parse_list(_FRACTIONS.value, float, 'fractions'))
  )
  study.check_fractions(fractions)
  seeds = common.parse_list(_SEEDS.value, int, 'seeds')
  ds = common.load_dataset()
  model_cfg, cfg = common.model_config(), common.train_config()
  common.save_flags(workdir)
  settings = dict(
    fractions=fractions,
    seeds=seeds,
    lr=common.LR.value,
    epochs=common.EPOCHS.value,
    max_epochs=_MAX_EPOCHS.value,
  )
  result = study.run(ds, model_cfg, cfg, log=common.log, **settings)
  text = report.write_outputs(
    workdir,
    result,
    ds,
    model_cfg=model_cfg,
    cfg=cfg,
    data_dir=common.DATA_DIR.value,
    embeddings=common.EMBEDDINGS.value,
    **settings,
  )
  common.log(
    f'\n{text}\n{len(result["runs"])} runs in '
    f'{result["seconds"]:.0f}s; wrote {workdir}'
  )


if __name__ == '__main__':
  common.run(main)
