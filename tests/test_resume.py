"""Runs that survive: checkpoints with exact resume, one run per workdir.

A training subprocess is killed with SIGKILL after its first complete
checkpoint and resumed with --resume; its parameters, result and metrics
must equal those of an uninterrupted run bit for bit (timings aside). The
CPU runs these small models' products in a fixed order, so no thread
pinning is needed (both runs use the same threads and the same program).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from research.training import checkpoint as checkpoint_lib
from tests.conftest import run_entry
from tests.conftest import start_entry
from tests.test_entrypoints import assert_one_line_error

TIMINGS = (
  'train_seconds',
  'compile_seconds',
  'train_windows_per_sec',
  'wall',  # where the run's time went (timing.breakdown)
  'integrity_seconds',  # of it, checksums and fsyncs
)


def _flags(corpus, workdir, *extra):
  return (
    f'--data_dir={corpus}',
    '--embeddings=random',
    '--hidden=8',
    '--batch_size=32',
    f'--workdir={workdir}',
    *extra,
  )


def _complete_checkpoints(workdir):
  found = []
  # os.walk skips what orbax renames while it lists (rglob would raise).
  for _parent, dirs, _ in os.walk(workdir / 'checkpoints'):
    found += [d for d in dirs if re.fullmatch(r'\d+', d)]
  return found


def _kill_after_first_checkpoint(entry, args, workdir, timeout=120):
  """Starts `entry` and SIGKILLs it once a complete checkpoint exists."""
  proc = start_entry(entry, *args)
  deadline = time.monotonic() + timeout
  while not _complete_checkpoints(workdir):
    assert proc.poll() is None, 'the run ended before its first checkpoint'
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not (workdir / 'result.json').exists()  # killed mid-run


def _without_timings(result):
  out = {k: v for k, v in result.items() if k not in TIMINGS}
  out.pop('first_pass', None)  # its seconds
  if 'timings' in out:
    out['timings'] = [
      {k: v for k, v in t.items() if k not in ('seconds', *TIMINGS)}
      for t in out['timings']
    ]
  return out


def _uninterrupted_and_resumed(entry, corpus, tmp_path, extra):
  """Runs `entry` once through (ref), once killed after its first
  checkpoint and resumed (run); returns (ref, run, the resume's result)."""
  ref = tmp_path / 'ref'
  result = run_entry(entry, *_flags(corpus, ref, *extra))
  assert result.returncode == 0, result.stderr
  run = tmp_path / 'run'
  args = _flags(corpus, run, *extra)
  _kill_after_first_checkpoint(entry, args, run)
  result = run_entry(entry, *args, '--resume')
  assert result.returncode == 0, result.stderr
  return ref, run, result


def test_killed_train_resumes_bit_identical(corpus, tmp_path):
  extra = ('--epochs=12', '--checkpoint_every=40', '--select=best_dev')
  ref, run, result = _uninterrupted_and_resumed(
    'experiments.train', corpus, tmp_path, extra
  )
  assert re.search(r'resumed at step [1-9]\d*/', result.stdout)
  with np.load(ref / 'params.npz') as a, np.load(run / 'params.npz') as b:
    assert a.files == b.files
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k])
  got, want = (json.loads((d / 'result.json').read_text()) for d in (run, ref))
  assert _without_timings(got) == _without_timings(want)
  assert (run / 'metrics.jsonl').read_text() == (
    ref / 'metrics.jsonl'
  ).read_text()
  # Resuming with other flags than the run's is refused, in one line.
  other = run_entry(
    'experiments.train', *_flags(corpus, ref, *extra[1:], '--resume')
  )
  assert_one_line_error(other, '--resume', '--epochs', 'differ')


def test_killed_sweep_resumes_bit_identical(corpus, tmp_path):
  extra = (
    '--epochs=6',
    '--checkpoint_every=20',
    '--l2s=0,1e-4',
    '--seeds=0',
    '--objectives=xent',
  )
  ref, run, result = _uninterrupted_and_resumed(
    'experiments.sweep', corpus, tmp_path, extra
  )
  assert 'resumed at step' in result.stdout
  got, want = (json.loads((d / 'results.json').read_text()) for d in (run, ref))
  assert _without_timings(got) == _without_timings(want)


def test_resume_needs_a_run(corpus, tmp_path):
  result = run_entry(
    'experiments.train', *_flags(corpus, tmp_path / 'run', '--resume')
  )
  assert_one_line_error(result, '--resume', 'no run to resume')
  assert not (tmp_path / 'run').exists()


def test_a_second_launch_into_a_running_workdir_is_refused(corpus, tmp_path):
  """The first run holds the workdir's flock; the second is refused at once
  and touches nothing; once the first is killed (SIGKILL releases the
  lock) the directory can be resumed."""
  run = tmp_path / 'run'
  args = _flags(corpus, run, '--epochs=200', '--checkpoint_every=100')
  first = start_entry('experiments.train', *args)
  try:
    while not (run / 'flags.txt').exists():
      assert first.poll() is None
      time.sleep(0.01)
    before = {p: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    second = run_entry('experiments.train', *args)
    assert_one_line_error(second, 'in use by a running run', f'pid {first.pid}')
    for p, mtime in before.items():
      if p.name == 'flags.txt':
        assert p.stat().st_mtime_ns == mtime
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert run_entry('experiments.train', *args).returncode == 2  # not empty


def test_an_unfinished_checkpoint_is_never_taken(tmp_path):
  """A checkpoint directory cut short (orbax's temporary name, no commit)
  is not the latest; the newest complete one is."""
  import jax.numpy as jnp  # noqa: PLC0415

  ckpt = checkpoint_lib.Checkpointer(tmp_path / 'c', resume=True)
  ckpt.save(5, {'w': jnp.arange(3.0)}, {}, {'step': 5})
  (tmp_path / 'c' / '9.orbax-checkpoint-tmp-1234').mkdir()
  assert ckpt.latest() == 5
  state, extra, record = ckpt.restore({'w': jnp.zeros(3)})
  np.testing.assert_array_equal(state['w'], [0.0, 1.0, 2.0])
  assert extra == {} and record == {'step': 5}


def test_entry_points_without_checkpoints_refuse_resume(tmp_path):
  result = run_entry(
    'experiments.bench', '--resume', f'--workdir={tmp_path / "run"}'
  )
  assert_one_line_error(result, '--resume', 'bench does not take it')


def test_evaluations_save_only_checkpoint_seconds_apart(corpus, tmp_path):
  """A short run saves once, at its end (--checkpoint_seconds=30, the
  default); with 0 it saves at every evaluation (each epoch)."""
  steps = {}
  for seconds in ('30', '0'):
    run = tmp_path / seconds
    args = _flags(corpus, run, '--epochs=3', '--keep_checkpoints=5')
    result = run_entry(
      'experiments.train', *args, f'--checkpoint_seconds={seconds}'
    )
    assert result.returncode == 0, result.stderr
    steps[seconds] = sorted(int(s) for s in _complete_checkpoints(run))
  total = steps['0'][-1]
  assert len(steps['0']) == 3 and steps['0'] == [
    total // 3 * e for e in (1, 2, 3)
  ]
  assert steps['30'] == [total]


def test_a_flag_newer_than_the_run_is_compared_only_when_set(corpus, tmp_path):
  """A run whose flags.txt predates a flag trained with its default: it
  resumes without it, and is refused when the flag is set to another
  value."""
  run = tmp_path / 'run'
  args = _flags(corpus, run, '--epochs=1')
  assert run_entry('experiments.train', *args).returncode == 0
  lines = (run / 'flags.txt').read_text().splitlines()
  assert '--lr_decay=0.0' in lines
  (run / 'flags.txt').write_text(
    '\n'.join(x for x in lines if not x.startswith('--lr_decay')) + '\n'
  )
  same = run_entry('experiments.train', *args, '--resume')
  assert same.returncode == 0, same.stderr
  other = run_entry('experiments.train', *args, '--resume', '--lr_decay=0.1')
  assert_one_line_error(other, '--resume', '--lr_decay', 'differ')


def test_resume_compares_the_flags_before_reading_data(tmp_path):
  """Flags that differ from the run's are refused at once: here before
  the (missing) data directory is even looked at."""
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'flags.txt').write_text('# ./launch.sh train\n--epochs=3\n')
  result = run_entry(
    'experiments.train', *_flags(tmp_path / 'nowhere', run, '--resume')
  )
  assert_one_line_error(result, '--resume', '--epochs', 'differ')
  assert (run / 'flags.txt').read_text() == '# ./launch.sh train\n--epochs=3\n'


def test_ctrl_c_says_where_the_run_stopped(corpus, tmp_path):
  """SIGINT once a checkpoint exists: exit 130 and one line naming the
  newest checkpoint's step, which --resume continues from."""
  run = tmp_path / 'run'
  args = _flags(corpus, run, '--epochs=200', '--checkpoint_every=20')
  proc = start_entry('experiments.train', *args, stderr=subprocess.PIPE)
  try:
    deadline = time.monotonic() + 120
    while not _complete_checkpoints(run):
      assert proc.poll() is None, 'the run ended before its first checkpoint'
      assert time.monotonic() < deadline
      time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('interrupted'), stderr
  step = re.search(r'newest checkpoint step (\d+)', lines[0])
  assert step and int(step.group(1)) % 20 == 0, lines[0]
  assert str(run) in lines[0] and '--resume continues' in lines[0]
  assert int(step.group(1)) in map(int, _complete_checkpoints(run))


def test_a_library_log_of_the_interrupt_is_left_out():
  """The Ctrl-C line is ours alone: a record a library logs with the
  KeyboardInterrupt it caught (orbax, waiting for a checkpoint) is dropped,
  any other kept."""
  import logging as std_logging  # noqa: PLC0415

  from research import errors  # noqa: PLC0415

  def record(exc):
    try:
      raise exc
    except BaseException:  # noqa: BLE001
      return std_logging.LogRecord(
        'absl', std_logging.ERROR, 'f.py', 1, 'failed', None, sys.exc_info()
      )

  assert not errors.not_an_interrupt(record(KeyboardInterrupt()))
  assert errors.not_an_interrupt(record(ValueError('kept')))
  # The echoes of a storage fault the entry point says in its one line:
  # orbax's log of a full disk, asyncio's of a damaged checkpoint's reads.
  full = "RESOURCE_EXHAUSTED: ... No space left [os_error_code='28']"
  assert not errors.not_an_interrupt(record(ValueError(full)))
  never = std_logging.LogRecord(
    'asyncio', std_logging.ERROR, 'base_events.py', 1,
    '_GatheringFuture exception was never retrieved\nfuture: <... '
    'exception=Exception("Encountered error while reading array index: '
    '... TensorStore({...})")>', None, None,
  )  # fmt: skip
  assert not errors.not_an_interrupt(never)
  other = std_logging.LogRecord(
    'asyncio', std_logging.ERROR, 'b.py', 1, 'Task exception was never '
    'retrieved: a bug', None, None,
  )  # fmt: skip
  assert errors.not_an_interrupt(other)


class _DropsAnInterrupt:
  """Sends this process SIGINT from `__del__`, where Python drops the
  KeyboardInterrupt its handler raises ("Exception ignored in ...")."""

  def __del__(self):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10_000):  # the handler runs at a bytecode boundary here
      pass


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_ctrl_c_python_drops_is_raised_at_the_next_check():
  """A Ctrl-C landing in a garbage-collection callback or `__del__` is lost
  to Python's own handler (the run went on to exit 0); errors.Interrupts
  remembers it, and the entry points' next progress line raises it."""
  from research import errors  # noqa: PLC0415

  old, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
  try:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _DropsAnInterrupt()  # dropped: nothing is raised here
    interrupts = errors.Interrupts()
    interrupts.install()
    interrupts.check()  # nothing pending yet
    reported = []
    sys.unraisablehook = reported.append
    interrupts.install()  # over a hook that records what reaches it
    _DropsAnInterrupt()
    assert not reported  # Python's report of it is left out
    with pytest.raises(KeyboardInterrupt):
      interrupts.check()
  finally:
    signal.signal(signal.SIGINT, old)
    sys.unraisablehook = hook


def test_a_checkpoint_record_is_not_the_live_history():
  """resume.save hands the checkpoint a copy of the history: the record is
  written in the background while the run appends rows (a row written into
  an earlier checkpoint would be evaluated again after a resume)."""
  from research.training import resume  # noqa: PLC0415

  class Saved:
    def save(self, step, state, extra, record):
      self.record = record

  class Meter:
    def record(self):
      return {'sums': [1.0]}

  class Loop:
    step, state, meter = 40, {}, Meter()

  history = [{'step': 20, 'dev': {'f1': 50.0}}]
  checkpoint = Saved()
  resume.save(checkpoint, Loop(), history)
  history.append({'step': 40, 'dev': {'f1': 60.0}})
  history[0]['dev']['f1'] = 0.0
  assert checkpoint.record['history'] == [{'step': 20, 'dev': {'f1': 50.0}}]
