"""TensorBoard event files and profiles: a train run and a sweep on the
shipped WikiGold data write streams that TensorBoard's own event reader
loads, with every tag; --profile writes a trace."""

import pathlib

from tensorboard.backend.event_processing import event_accumulator

from tests.conftest import run_entry

WIKIGOLD = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'wikigold'
QUICK = ('--embeddings=random', '--hidden=16', '--epochs=2', '--batch_size=64')


def _scalars(directory):
  """{tag: [(step, value)]} as TensorBoard reads a stream."""
  acc = event_accumulator.EventAccumulator(str(directory))
  acc.Reload()
  return {
    tag: [(e.step, e.value) for e in acc.Scalars(tag)]
    for tag in acc.Tags()['scalars']
  }


def test_a_train_run_writes_its_stream_and_profile(tmp_path):
  workdir = tmp_path / 'run'
  result = run_entry(
    'experiments.train',
    f'--data_dir={WIKIGOLD}',
    *QUICK,
    '--profile',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  scalars = _scalars(workdir / 'events')
  for tag in (
    'train/loss', 'dev/f1', 'dev/precision', 'dev/recall', 'dev/loss',
    'dev/unseen_f1', 'train_eval/f1', 'lr', 'weight_norm', 'seconds/train',
  ):  # fmt: skip
    assert tag in scalars, (tag, sorted(scalars))
  steps = [s for s, _ in scalars['dev/f1']]
  assert len(steps) == 2 and steps == sorted(steps) and steps[0] > 0
  metrics = (workdir / 'metrics.jsonl').read_text().splitlines()
  assert len(metrics) == len(steps)
  traces = [p for p in (workdir / 'profile').rglob('*') if p.is_file()]
  assert traces and all(p.stat().st_size > 0 for p in traces), traces
  assert any(p.name.endswith('.xplane.pb') for p in traces), traces


def test_a_sweep_writes_one_stream_per_configuration(tmp_path):
  workdir = tmp_path / 'sweep'
  result = run_entry(
    'experiments.sweep',
    f'--data_dir={WIKIGOLD}',
    *QUICK,
    '--objectives=xent,max_margin',
    '--l2s=0,0.001',
    '--seeds=0',
    f'--workdir={workdir}',
  )
  assert result.returncode == 0, result.stderr
  streams = sorted(p.name for p in (workdir / 'events').iterdir())
  assert streams == [
    'max_margin_l2=0.001_seed=0', 'max_margin_l2=0_seed=0',
    'xent_l2=0.001_seed=0', 'xent_l2=0_seed=0',
  ]  # fmt: skip
  f1 = {s: _scalars(workdir / 'events' / s)['dev/f1'] for s in streams}
  assert all(len(v) == 2 for v in f1.values()), f1
  assert len({v[-1][1] for v in f1.values()}) > 1  # four runs, not one
