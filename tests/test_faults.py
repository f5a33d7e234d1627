"""Faults injected into runs: nothing a user had is lost, nothing damaged is
used silently, and every fault is one line (exit 2; 130 for Ctrl-C).

Faults come from tests/fault_harness.py (no root, no real full disk): a
SIGKILL at each rename of an atomic write, a write failing with ENOSPC,
EACCES or EROFS, a file system with no free space, orbax failing as it
does on a full disk; and damage done to files on disk: a flipped bit, a
truncated file.
"""

import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from research import files
from research import workdir as workdir_lib
from research.data import cache as dataset_cache
from research.data import vocab as vocab_lib
from research.errors import UserError
from tests.conftest import REPO
from tests.conftest import entry_env
from tests.conftest import run_entry
from tests.test_entrypoints import assert_one_line_error
from tests.test_entrypoints import finished_run

TINY = ('--embeddings=random', '--hidden=8', '--batch_size=32')


def harness(fault, *args, timeout=300):
  """Runs tests/fault_harness.py with `fault` on `args`."""
  return subprocess.run(
    [sys.executable, '-m', 'tests.fault_harness', fault, *args],
    cwd=REPO,
    env=entry_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def train_args(corpus, workdir, *extra):
  return (f'--data_dir={corpus}', *TINY, f'--workdir={workdir}', *extra)


def flip_bit(path, bit=2):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 1 << bit
  path.write_bytes(bytes(data))


def truncate(path, size=None):
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2 if size is None else size])


# --- Flags: non-finite values are refused before a workdir exists. -------


@pytest.mark.parametrize('flag', ['--lr=nan', '--l2=1e999'])
def test_a_non_finite_flag_is_refused_before_a_workdir(tmp_path, flag):
  result = run_entry('experiments.train', flag, f'--workdir={tmp_path / "w"}')
  assert_one_line_error(result, flag, 'not a finite number')
  assert not (tmp_path / 'w').exists()


# --- --overwrite never deletes an earlier run. -----------------------------


def test_a_retried_overwrite_keeps_every_earlier_model(tmp_path):
  """The probe's case: a failed --overwrite, then the same command again,
  once after a SIGKILL at its first write: the first run's model is kept,
  and each try says where it moved what it found."""
  workdir = finished_run(tmp_path / 'run')
  bad = ('experiments.train', '--data_dir=/no/such/dir', f'--workdir={workdir}')
  first = run_entry(*bad, '--overwrite')
  assert_one_line_error(first, 'data directory not found')
  assert f'{workdir}/.previous-run-1' in first.stdout
  killed = harness('kill-before:1', *bad, '--overwrite')
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  again = run_entry(*bad, '--overwrite')
  assert_one_line_error(again, 'data directory not found')
  kept = workdir / '.previous-run-1'
  assert (kept / 'params.npz').read_text() == 'old'
  assert (kept / 'result.json').read_text() == '{"old": true}'
  assert (workdir / '.previous-run-2' / 'flags.txt').is_file()
  assert (workdir / '.previous-run-3').is_dir()  # the killed try's
  result = run_entry(
    'experiments.predict', f'--model_dir={workdir}', '--text=Anna visited'
  )
  assert_one_line_error(result, 'not a trained run directory', str(kept))


# --- Checkpoints are verified: a damaged one is named and skipped. ---------


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished train run with three checkpoints, and a copy of its
  params.npz."""
  from tests.conftest import write_corpus  # noqa: PLC0415

  root = tmp_path_factory.mktemp('finished')
  corpus = write_corpus(root / 'corpus')
  run = root / 'run'
  args = train_args(corpus, run, '--epochs=3', '--checkpoint_every=5')
  result = run_entry('experiments.train', *args)
  assert result.returncode == 0, result.stderr
  steps = sorted(int(p.name) for p in (run / 'checkpoints' / 'model').iterdir())
  assert len(steps) == 3, steps
  return run, args, steps, (run / 'params.npz').read_bytes()


def copy_run(run, tmp_path):
  target = tmp_path / 'run'
  tmp_path.mkdir(parents=True, exist_ok=True)
  subprocess.run(['cp', '-r', str(run), str(target)], check=True)
  return target


def largest_state_file(run, step):
  state = run / 'checkpoints' / 'model' / str(step) / 'state'
  found = [p for p in state.rglob('*') if p.is_file()]
  return max(found, key=lambda p: p.stat().st_size)


def test_a_damaged_checkpoint_is_named_and_the_one_before_taken(
  finished, tmp_path
):
  """A flipped bit in the newest checkpoint's arrays and a truncated record
  in the one before: --resume names both, moves them aside (kept), goes
  on from the oldest, and ends with the uninterrupted run's parameters."""
  source, args, steps, params = finished
  run = copy_run(source, tmp_path)
  flip_bit(largest_state_file(run, steps[2]))
  truncate(
    run / 'checkpoints' / 'model' / str(steps[1]) / 'record' / 'metadata'
  )
  args = [a.replace(str(source), str(run)) for a in args]
  result = run_entry('experiments.train', *args, '--resume')
  assert result.returncode == 0, result.stderr
  assert result.stderr == '', result.stderr
  out = result.stdout
  assert (
    f'model/{steps[2]} is damaged (its state arrays fail their CRC-32)' in (out)
  )
  assert f'model/{steps[1]} is damaged (its record does not read' in out
  assert f'resumed at step {steps[0]}/' in out
  for step in steps[1:]:
    assert (run / 'checkpoints' / 'model' / f'damaged-{step}').is_dir()
  assert (run / 'params.npz').read_bytes() == params
  workdir_lib.load_model(run)  # sealed and intact


def test_a_kill_while_a_checkpoint_is_written_resumes_bit_identical(
  finished, tmp_path
):
  """SIGKILL while the 4th checkpoint is being written in the background,
  then --resume: the parameters of the uninterrupted run."""
  source, args, _, params = finished
  run = tmp_path / 'run'
  args = [a.replace(str(source), str(run)) for a in args]
  killed = harness('kill-checkpoint:4', 'experiments.train', *args)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  result = run_entry('experiments.train', *args, '--resume')
  assert result.returncode == 0, result.stderr
  assert 'resumed at step' in result.stdout
  assert (run / 'params.npz').read_bytes() == params


def test_no_intact_checkpoint_is_one_line(finished, tmp_path):
  """Every checkpoint damaged (a flipped high bit, a truncated array file,
  a truncated record): one line that names them all, exit 2."""
  source, args, steps, _ = finished
  run = copy_run(source, tmp_path)
  flip_bit(largest_state_file(run, steps[2]), bit=7)
  truncate(largest_state_file(run, steps[1]), size=100)
  truncate(
    run / 'checkpoints' / 'model' / str(steps[0]) / 'record' / 'metadata'
  )
  args = [a.replace(str(source), str(run)) for a in args]
  result = run_entry('experiments.train', *args, '--resume')
  assert_one_line_error(result, 'no intact checkpoint', *map(str, steps))


def test_the_flipped_bit_is_caught_by_the_checksum(finished, tmp_path):
  """The same flipped bit, in a checkpoint whose record has its checksums
  taken out (as orbax alone writes it): restored without a word, which is
  what the checksums are there for."""
  from research.training import checkpoint  # noqa: PLC0415

  source, _, steps, _ = finished
  run = copy_run(source, tmp_path)
  flip_bit(largest_state_file(run, steps[2]))
  directory = run / 'checkpoints' / 'model'
  ckpt = checkpoint.Checkpointer(directory, resume=True)
  like = _state_like(ckpt, steps[2])
  with pytest.raises(checkpoint._Damaged, match='CRC-32'):  # noqa: SLF001
    ckpt._restore(steps[2], like)  # noqa: SLF001
  metadata = directory / str(steps[2]) / 'record' / 'metadata'
  record = json.loads(metadata.read_text())
  del record['fingerprint']
  metadata.write_text(json.dumps(record))
  ckpt = checkpoint.Checkpointer(directory, resume=True)
  state, _, _ = ckpt._restore(steps[2], like)  # noqa: SLF001
  assert len(state) == len(like)


def _state_like(ckpt, step):
  """The restore target of checkpoint `step`: arrays of its shapes."""
  import orbax.checkpoint as ocp  # noqa: PLC0415

  record = ckpt.manager.restore(
    step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
  ).record
  return {
    str(i): np.zeros(shape, dtype)
    for i, (shape, dtype, _) in enumerate(record['fingerprint']['state'])
  }


# --- A file system fault is one line; nothing written is damaged. ---------


def test_a_full_disk_at_params_npz_is_one_line_and_resumable(corpus, tmp_path):
  """ENOSPC halfway through params.npz: one line (what was saved, the space
  needed, --resume), no partial params.npz; --resume then finishes."""
  run = tmp_path / 'run'
  args = train_args(corpus, run, '--epochs=2')
  result = harness('enospc:params.npz', 'experiments.train', *args)
  assert_one_line_error(
    result, 'no space left', 'params.npz', 'needed', 'checkpoint step',
    '--resume',
  )  # fmt: skip
  names = {p.name for p in run.iterdir()}
  assert 'params.npz' not in names and not any('.tmp' in n for n in names)
  assert files.MANIFEST not in names
  with pytest.raises(UserError, match='not a trained run directory'):
    workdir_lib.load_model(run)
  resumed = run_entry('experiments.train', *args, '--resume')
  assert resumed.returncode == 0, resumed.stderr
  workdir_lib.load_model(run)


@pytest.mark.parametrize(
  'fault, fragments',
  [
    ('eacces:metrics.jsonl', ('permission denied', 'metrics.jsonl')),
    ('erofs:flags.txt', ('read-only file system', 'flags.txt')),
    ('disk-full', ('no space left', 'checkpoint', 'needs up to', 'free')),
    ('orbax-enospc', ('no space left', 'checkpoints/model/', '--resume')),
  ],
)
def test_a_file_system_fault_is_one_line(corpus, tmp_path, fault, fragments):
  run = tmp_path / 'run'
  result = harness(fault, 'experiments.train', *train_args(corpus, run))
  assert_one_line_error(result, *fragments)


def test_a_workdir_under_a_file_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('')
  result = run_entry(
    'experiments.train', f'--workdir={tmp_path / "file" / "run"}'
  )
  assert_one_line_error(result, 'is a file, not a directory')


# --- Outputs: atomic, sealed together, verified when read. ----------------


def _model(seed):
  """The output files of a small model; each differs between seeds."""
  rng = np.random.default_rng(seed)
  params = {'L': rng.normal(size=(5, 3)), 'W': rng.normal(size=(2, 9))}
  words = ['<s>', '</s>', '<unk>', f'a{seed}', f'b{seed}']
  vocab = vocab_lib.Vocab(words, frozenset({f'a{seed}'}))
  named = workdir_lib.model_files(
    params, vocab, ['O', f'B-X{seed}'], {'k': seed}
  )
  return dict(named, **{'examples.md': f'# {seed}\n'})


def _write(tmp_path, directory, named, fault):
  pickled = tmp_path / f'files-{fault}.pickle'
  pickled.write_bytes(pickle.dumps(named))
  return harness(fault, 'outputs', str(directory), str(pickled), timeout=60)


def _state_of(directory):
  """What a reader makes of `directory`: 'refused' or the config's k."""
  try:
    return workdir_lib.load_model(directory)[3]['k']
  except UserError:
    return 'refused'


def test_a_kill_at_each_rename_of_the_outputs_leaves_old_or_new(tmp_path):
  """The outputs written over a sealed run of other bytes (the worst case:
  a resumed run writes the same bytes, and leaves them as they are),
  SIGKILLed before and after each rename: the reader gets the old model,
  the new one, or a one-line refusal, never files of both."""
  old, new = _model(1), _model(2)
  (tmp_path / 'probe').mkdir()
  listed = _write(tmp_path, tmp_path / 'probe', new, 'none')
  assert listed.returncode == 0, listed.stderr
  renames = listed.stderr.count('rename ')
  assert renames == len(new) + 1  # each file and the manifest
  seen = set()
  for n in range(1, renames + 1):
    for when in ('before', 'after'):
      directory = tmp_path / f'{when}-{n}'
      directory.mkdir()
      files_before = _write(tmp_path, directory, old, 'none')
      assert files_before.returncode == 0
      killed = _write(tmp_path, directory, new, f'kill-{when}:{n}')
      assert killed.returncode == -signal.SIGKILL, killed.stderr
      state = _state_of(directory)
      seen.add(state)
      assert state in (1, 2, 'refused'), state
  assert seen == {1, 2, 'refused'}
  # Into a new directory: nothing, or all of it.
  for n in range(1, renames + 1):
    directory = tmp_path / f'fresh-{n}'
    directory.mkdir()
    _write(tmp_path, directory, new, f'kill-after:{n}')
    assert _state_of(directory) == (2 if n == renames else 'refused')


def test_a_kill_at_each_rename_of_the_results_page_leaves_old_or_new(tmp_path):
  """`report` writing a page over an earlier one, SIGKILLed before and
  after each rename: the page is the old one or the new one, whole, and
  every plot or flag file it links exists."""
  from tests.test_reports import fake_train_run  # noqa: PLC0415

  old_run = fake_train_run(tmp_path / 'runs', 'a-run', 11.5)
  new_run = fake_train_run(tmp_path / 'runs', 'b-run', 22.5)

  def text_of(page):  # the page's own location written as <page>
    return re.sub(r'--flagfile=\S*?/results/', '<page>', page.read_text())

  probe = tmp_path / 'probe' / 'results.md'
  assert harness('none', 'page', str(probe), str(old_run)).returncode == 0
  texts = [text_of(probe)]
  shutil.copytree(probe.parent, tmp_path / 'template')
  listed = harness('none', 'page', str(probe), str(new_run))
  texts.append(text_of(probe))
  renames = listed.stderr.count('rename ')
  assert renames >= 2 and texts[0] != texts[1], listed.stderr
  # Before the first rename, after each (after the last: the new page).
  for fault in ['kill-before:1'] + [
    f'kill-after:{n + 1}' for n in range(renames)
  ]:
    page = tmp_path / fault.replace(':', '-') / 'results.md'
    shutil.copytree(tmp_path / 'template', page.parent)
    killed = harness(fault, 'page', str(page), str(new_run))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert text_of(page) == texts[fault == f'kill-after:{renames}']
    for link in re.findall(r'\]\(([^)]+)\)', page.read_text()):
      if not link.startswith('http'):
        assert (page.parent / link).is_file(), link


def test_a_resume_of_a_finished_run_leaves_its_model_files(finished, tmp_path):
  """--resume of a finished run renames only result.json and the manifest
  (and metrics.jsonl, rewritten from the checkpoint): a kill then never
  touches params.npz."""
  source, args, _, params = finished
  run = copy_run(source, tmp_path)
  args = [a.replace(str(source), str(run)) for a in args]
  result = harness('none', 'experiments.train', *args, '--resume')
  assert result.returncode == 0, result.stderr
  renamed = {
    line.split(': ')[1]
    for line in result.stderr.splitlines()
    if line.startswith('rename ') and not line.endswith('.pickle')
  }  # (a data cache entry, when the cache is cold)
  assert renamed == {'metrics.jsonl', 'result.json', files.MANIFEST}, renamed
  assert (run / 'params.npz').read_bytes() == params


def test_a_damaged_model_is_refused_in_one_line(finished, tmp_path):
  source = finished[0]
  cases = {
    'flipped': lambda run: flip_bit(run / 'params.npz'),
    'truncated': lambda run: truncate(run / 'params.npz'),
    'vocab': lambda run: (run / 'vocab.txt').write_text('x\n'),
    'manifest': lambda run: truncate(run / files.MANIFEST),
  }
  for name, damage in cases.items():
    run = copy_run(source, tmp_path / name)
    damage(run)
    with pytest.raises(UserError, match=r'damaged|does not match'):
      workdir_lib.load_model(run)
  run = copy_run(source, tmp_path / 'unsealed')
  for name in (files.MANIFEST, 'result.json'):
    (run / name).unlink()
  with pytest.raises(UserError, match='stopped while writing'):
    workdir_lib.load_model(run)
  result = run_entry(
    'experiments.predict', f'--model_dir={tmp_path / "flipped" / "run"}',
    '--text=Anna',
  )  # fmt: skip
  assert_one_line_error(result, 'params.npz', 'does not match its checksum')


def test_a_damaged_data_cache_entry_is_read_anew(tmp_path):
  dataset_cache.save(tmp_path, 'entry', {'x': list(range(100))})
  assert dataset_cache.load(tmp_path, 'entry') == {'x': list(range(100))}
  flip_bit(tmp_path / 'entry.pickle', bit=0)
  assert dataset_cache.load(tmp_path, 'entry') is None


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path):
  path = tmp_path / 'result.json'
  files.write_json(path, {'old': True})

  def fails(f):
    f.write(b'{"new"')
    raise OSError(28, os.strerror(28), str(path))

  with pytest.raises(files.Fault, match='no space left'):
    files.write_with(path, fails, needed=10)
  assert json.loads(path.read_text()) == {'old': True}
  assert [p.name for p in tmp_path.iterdir()] == ['result.json']


def test_the_readme_says_what_a_run_directory_guarantees():
  text = (pathlib.Path(REPO) / 'README.md').read_text()
  for fragment in ('atomic', 'manifest.json', '.previous-run-N'):
    assert fragment in text, fragment
