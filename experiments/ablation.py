r"""Ablation: each part of the strong model added to the default, and removed.

  ./launch.sh ablation --data_dir=../shared/data/conll2003 --workdir=runs/abl

The rows are research/studies/ablation.py's ADDED and REMOVED; the settings
they do not vary (optimizer, lr, window, hidden units, ...) come from the
usual flags. Writes into --workdir: flags.txt, results.json, results.csv,
report.md, ablation.png.
"""

from absl import flags

from experiments import _shared as common
from research import engine
from research.studies import ablation
from research.studies import ablation_report

_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of every row.')
_ROWS = flags.DEFINE_enum(
  'rows', 'all', ['all', 'added', 'removed'], 'Which path of rows to train.'
)


def main(_):
  workdir = common.workdir('ablation')
  seeds = common.parse_list(_SEEDS.value, int, 'seeds')

  def load(features, tag_scheme):
    return common.load_dataset(features=features, tag_scheme=tag_scheme)

  common.save_flags(workdir)
  results = ablation.run(
    load,
    common.model_config(),
    common.train_config(),
    engine.Hyper(common.LR.value, 0.0),
    seeds,
    rows=_ROWS.value,
    log=common.log,
  )
  table = ablation_report.write_outputs(
    workdir, results, data_dir=common.DATA_DIR.value, seeds=seeds
  )
  common.log(f'\n{table}\nwrote {workdir}/report.md')


if __name__ == '__main__':
  common.run(main)
