"""A run directory: resolved flags, metrics.jsonl, result.json, parameters.

Layout written by `experiments.train`:
  flags.txt      the resolved flags (the command line that repeats the run)
  config.json    model / training configuration, for loading the model
  metrics.jsonl  one JSON object per evaluation
  result.json    final dev/test scores and throughput
  params.npz     trained parameters (a flat dict of arrays)
  vocab.txt      one word per line (row i of L)
  tags.txt       one tag per line (class i)
  pretrained_words.txt  those normalize tells apart (vocab.consulted)
  checkpoints/   the training state every so many steps (orbax)
  .lock          held (fcntl.flock) by the process that runs in it
  .previous-run/ what an overwritten run left (`claim(..., overwrite=True)`)

Overwriting a run moves it aside, whole, into .previous-run/ (replacing the
one there) before the new run writes anything: a new run that then fails,
diverges or is interrupted leaves no file of the old one beside its own,
so its directory is never mistaken for a finished run. The previous run
can be restored by hand from .previous-run/.
"""

import fcntl
import json
import os
import pathlib
import shutil
import socket

import numpy as np

from research import vocab as vocab_lib
from research.errors import UserError

LOCK = '.lock'
PREVIOUS = '.previous-run'
_held = []  # (open lock file, path, created by this process)


def claim(workdir, overwrite=False, resume=False):
  """Claims the run directory `workdir` for this process and returns it.

  The claim is an exclusive `fcntl.flock` on workdir/.lock, taken before
  anything is read or written: a second process that asks for the same
  directory while the first runs is refused, whatever the timing, and the
  kernel drops the lock when its holder dies (even by SIGKILL), so a
  killed run can be resumed with nothing to clean up. A directory holding
  an earlier run's files is refused unless `overwrite` (they are moved into
  PREVIOUS, see the module docstring), or `resume` (which needs the run's
  flags.txt).
  """
  path = pathlib.Path(workdir)
  if path.exists() and not path.is_dir():
    raise UserError(
      f'`workdir={path}` is a file, not a directory; choose another `workdir`'
    )
  created = not path.exists()
  path.mkdir(parents=True, exist_ok=True)
  lock = open(path / LOCK, 'a+')
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.seek(0)
    holder = lock.read().strip() or 'another process'
    lock.close()
    raise UserError(
      f'`workdir={path}` is in use by a running run ({holder}); wait for '
      'it to end, or choose another `workdir`'
    ) from None
  _held.append((lock, path, created))
  others = [p for p in path.iterdir() if p.name not in (LOCK, PREVIOUS)]
  if resume and not (path / 'flags.txt').is_file():
    raise UserError(
      f'`resume`: `workdir={path}` holds no run to resume (no flags.txt); '
      'drop `resume` to start one there'
    )
  if others and not (overwrite or resume):
    raise UserError(
      f'`workdir={path}` already holds files from an earlier '
      'run; choose a new `workdir`, pass `resume` to continue it, or '
      '`overwrite` to replace them'
    )
  if others and overwrite and not resume:
    _move_aside(path, others)
  lock.seek(0)
  lock.truncate()
  lock.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
  lock.flush()
  return path


def _move_aside(path, names):
  """Moves the files `names` of `path` into path/PREVIOUS (emptied first)."""
  previous = path / PREVIOUS
  shutil.rmtree(previous, ignore_errors=True)
  previous.mkdir()
  for p in names:
    p.rename(previous / p.name)


def release_unused(written=()):
  """Removes a claimed directory this process created and left holding
  nothing but its lock and the files `written` (e.g. flags.txt): an error
  before any result was written."""
  for lock, path, created in _held:
    names = {p.name for p in path.iterdir()}
    if created and names <= {LOCK, *written}:
      for name in names:
        (path / name).unlink()
      shutil.rmtree(path, ignore_errors=True)
    lock.close()
  _held.clear()


def saved_flag(run_dir, name):
  """The value run_dir's flags.txt gives --name, or None (no such line, or
  no flags.txt)."""
  saved = pathlib.Path(run_dir) / 'flags.txt'
  if not saved.is_file():
    return None
  prefix = f'--{name}='
  for line in saved.read_text(encoding='utf-8').splitlines():
    if line.startswith(prefix):
      return line[len(prefix) :]
  return None


def write_json(path, obj):
  pathlib.Path(path).write_text(
    json.dumps(obj, indent=2, sort_keys=True) + '\n'
  )


def read_json(path):
  return json.loads(pathlib.Path(path).read_text())


class JsonlWriter:
  """Appends one JSON object per line, flushed at once."""

  def __init__(self, path):
    self._f = open(path, 'w')

  def write(self, row):
    self._f.write(json.dumps(row, sort_keys=True) + '\n')
    self._f.flush()

  def close(self):
    self._f.close()


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def save_model(path, params, vocab, tags, config):
  """Writes what `load_model` needs to tag new text."""
  path = pathlib.Path(path)
  np.savez(path / 'params.npz', **{k: np.asarray(v) for k, v in params.items()})
  (path / 'vocab.txt').write_text(
    '\n'.join(vocab.words) + '\n', encoding='utf-8'
  )
  (path / 'pretrained_words.txt').write_text(
    '\n'.join(vocab_lib.consulted(vocab.known)) + '\n', encoding='utf-8'
  )
  (path / 'tags.txt').write_text('\n'.join(tags) + '\n')
  write_json(path / 'config.json', config)


def load_model(path):
  """Returns (params, vocab, tags, config) saved by `save_model`."""
  path = pathlib.Path(path)
  names = (
    'params.npz',
    'vocab.txt',
    'pretrained_words.txt',
    'tags.txt',
    'config.json',
  )
  missing = [n for n in names if not (path / n).is_file()]
  if missing:
    raise UserError(
      f'{path}: not a trained run directory (missing '
      f'{", ".join(missing)}'
      + (
        f'; an overwritten run is in {path / PREVIOUS}'
        if (path / PREVIOUS).is_dir()
        else ''
      )
      + '); pass the directory of a finished experiments.train run'
    )
  with np.load(path / 'params.npz') as f:
    params = {k: f[k] for k in f.files}
  words = (path / 'vocab.txt').read_text(encoding='utf-8').split('\n')[:-1]
  known = (
    (path / 'pretrained_words.txt').read_text(encoding='utf-8').split('\n')[:-1]
  )
  vocab = vocab_lib.Vocab(words, frozenset(w for w in known if w))
  tags = (path / 'tags.txt').read_text().split()
  return params, vocab, tags, read_json(path / 'config.json')
