r"""Training throughput against this machine's own matmul peak.

  ./launch.sh bench --data_dir=../shared/data/conll2003 --workdir=runs/bench

What is measured, side by side, is listed in research/studies/throughput.py.
Writes bench.json, bench.md and throughput.png into --workdir.
"""

from absl import flags

from experiments import _shared as common
from research.studies import throughput
from research.studies import throughput_report

_BATCH_SIZES = flags.DEFINE_list(
  'batch_sizes',
  ['64', '128', '256', '512', '1024', '2048', '4096'],
  'Batch sizes to time (256 must be one).',
)
_BENCH_STEPS = flags.DEFINE_integer(
  'bench_steps',
  0,
  'Windows timed per measurement, in steps of the '
  'largest batch (0: one pass over the training windows).',
)
_SWEEP_CONFIGS = flags.DEFINE_integer(
  'sweep_configs', 8, 'Configurations in the vmapped sweep.'
)
_REPEATS = flags.DEFINE_integer(
  'repeats', 3, 'Timed rounds (best is kept).', lower_bound=1
)


def main(_):
  workdir = common.workdir('bench')
  batch_sizes = common.parse_list(_BATCH_SIZES.value, int, 'batch_sizes')
  throughput.check_batch_sizes(batch_sizes)
  datasets = {
    vocab: common.load_dataset(vocab=vocab) for vocab in ('data', 'pretrained')
  }
  common.save_flags(workdir)
  out = throughput.run(
    datasets,
    common.model_config(),
    common.train_config(),
    lr=common.LR.value,
    batch_sizes=batch_sizes,
    bench_steps=_BENCH_STEPS.value,
    sweep_configs=_SWEEP_CONFIGS.value,
    repeats=_REPEATS.value,
    log=common.log,
  )
  summary = throughput_report.write_outputs(workdir, out)
  common.log(f'\n{summary}\nwrote {workdir}/bench.md')


if __name__ == '__main__':
  common.run(main)
