r"""Objective x L2 sweep: the registry's objectives, each against L2.

  ./launch.sh                       (this sweep on the shipped WikiGold)
  ./launch.sh sweep --data_dir=../shared/data/conll2003 --workdir=runs/sweep

The study is research/studies/objective_l2.py, its report
objective_l2_report.py. Writes into --workdir: flags.txt, results.json (every
configuration with its learning curve), results.csv, report.md, f1_vs_l2.png,
learning_curves.png.
"""

from absl import flags

from experiments import _configs
from experiments import _flag_spec
from experiments import _flags
from experiments import _run
from research.formulas import objectives
from research.reports import objective_l2 as objective_l2_report
from research.studies import objective_l2

OBJECTIVES = objectives.names()
_flag_spec.use(
  _flags.DATA,
  _flags.MODEL_FLAGS,
  _flags.TRAINING,
  ('lr', 'epochs', 'decode'),
  _flags.RUN_DIR,
  _flags.CHECKPOINTING,
  _flags.DEVICES,
)
_OBJECTIVES = _flag_spec.define_list(
  'objectives',
  flags.EnumParser(list(OBJECTIVES)),
  ['xent', 'max_margin'],
  f"Objectives to compare, of the registry's ({objectives.describe()}); "
  'the sentence-level ones train on whole sentences, and so do all when one '
  'does.',
)
_L2S = _flag_spec.define_list(
  'l2s',
  _flags.L2,
  ['0', '1e-6', '1e-5', '1e-4', '1e-3'],
  'L2 strengths lambda (each as --l2).',
)
_SEEDS = _flag_spec.define_list(
  'seeds',
  _flags.SEED,
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
  workdir = _run.workdir('sweep', checkpoints=True)
  l2s = _flag_spec.items(_L2S)
  seeds = _flag_spec.items(_SEEDS)
  ds = _configs.load_dataset()
  _configs.check_batch_size(ds)
  model_cfg, cfg = _configs.model_config(), _configs.train_config()
  checkpoint = _run.checkpointer(workdir)
  sweep = objective_l2.run(
    ds,
    model_cfg,
    cfg,
    _OBJECTIVES.value,
    l2s,
    seeds,
    lr=_flags.LR.value,
    epochs=_flags.EPOCHS.value,
    vmap=_VMAP.value,
    log=_run.log,
    decode=_flags.DECODE.value,
    document=_configs.document_context(),
    checkpoint=checkpoint,
    events_dir=workdir / 'events',
  )
  table = objective_l2_report.write_outputs(
    workdir,
    dict(sweep, backend=_run.backend()),
    data_dir=_flags.DATA_DIR.value,
    model_cfg=model_cfg,
    cfg=cfg,
    lr=_flags.LR.value,
    epochs=_flags.EPOCHS.value,
    seeds=seeds,
    has_test='test' in ds.splits,
  )
  _run.log(
    f'\n{table}\n* the best L2 of each objective (mean dev F1 over seeds); '
    f'wrote {workdir}/report.md'
  )


if __name__ == '__main__':
  _run.run(main)
