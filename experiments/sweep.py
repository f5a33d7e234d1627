r"""Objective x L2 sweep: cross-entropy vs multiclass max-margin.

  ./launch.sh                       (this sweep on the shipped WikiGold)
  ./launch.sh sweep --data_dir=../shared/data/conll2003 --workdir=runs/sweep

The study is research/studies/objective_l2.py, its report
objective_l2_report.py. Writes into --workdir: flags.txt, results.json (every
configuration with its learning curve), results.csv, report.md, f1_vs_l2.png,
learning_curves.png.
"""

from absl import flags

from experiments import _shared as common
from research import crf
from research import losses
from research.studies import objective_l2
from research.studies import objective_l2_report

OBJECTIVES = tuple(losses.OBJECTIVES) + tuple(crf.OBJECTIVES)
_OBJECTIVES = flags.DEFINE_list(
  'objectives',
  ['xent', 'max_margin'],
  f'Objectives to compare, of {",".join(OBJECTIVES)} (crf and struct_margin '
  'train on whole sentences; so do all when one does).',
)
flags.register_validator(
  'objectives',
  lambda v: bool(v) and set(v) <= set(OBJECTIVES),
  f'--objectives: a comma-separated list of {",".join(OBJECTIVES)}',
)
_L2S = flags.DEFINE_list(
  'l2s', ['0', '1e-6', '1e-5', '1e-4', '1e-3'], 'L2 strengths lambda.'
)
_SEEDS = flags.DEFINE_list(
  'seeds',
  ['0', '1', '2'],
  'Seeds per cell: each picks the initialization '
  'of the layers and the shuffling; word vectors start from the same L.',
)
_VMAP = flags.DEFINE_bool(
  'vmap',
  True,
  "Train each objective's grid as one program (its configurations stacked: "
  'one after another inside each step on a CPU, vmapped elsewhere).',
)


def main(_):
  workdir = common.workdir('sweep', checkpoints=True)
  l2s = common.parse_list(_L2S.value, float, 'l2s')
  seeds = common.parse_list(_SEEDS.value, int, 'seeds')
  ds = common.load_dataset()
  common.check_batch_size(ds)
  model_cfg, cfg = common.model_config(), common.train_config()
  common.save_flags(workdir)
  checkpoint = common.checkpointer(workdir)
  sweep = objective_l2.run(
    ds,
    model_cfg,
    cfg,
    _OBJECTIVES.value,
    l2s,
    seeds,
    lr=common.LR.value,
    epochs=common.EPOCHS.value,
    vmap=_VMAP.value,
    log=common.log,
    decode=common.DECODE.value,
    checkpoint=checkpoint,
  )
  table = objective_l2_report.write_outputs(
    workdir,
    sweep,
    data_dir=common.DATA_DIR.value,
    model_cfg=model_cfg,
    cfg=cfg,
    lr=common.LR.value,
    epochs=common.EPOCHS.value,
    seeds=seeds,
    has_test='test' in ds.splits,
  )
  common.log(f'\n{table}\nwrote {workdir}/report.md')


if __name__ == '__main__':
  common.run(main)
