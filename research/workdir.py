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
  manifest.json  the size and SHA-256 of each output above, written last
  checkpoints/   the training state every so many steps (orbax)
  .lock          held (fcntl.flock) by the process that runs in it
  .previous-run-N/ what the N-th overwritten run left (`claim(...,
                 overwrite=True)`)

Every output is written atomically (research/files.py) and the manifest
seals them together: `load_model` checks each file it reads against it,
and refuses, in one line, a file that fails or a run whose outputs were
never sealed (one cut short while writing them).

Overwriting a run moves it aside, whole, into a new .previous-run-N/ (N
one more than the highest there) before the new run writes anything: a
new run that then fails, diverges or is interrupted leaves no file of the
old one beside its own, so its directory is never mistaken for a finished
run, and no earlier run is ever deleted (`rm -r DIR/.previous-run-N`
deletes one, when the user chooses to).
"""

import fcntl
import io
import json
import os
import pathlib
import re
import shutil
import socket
import zipfile

import numpy as np

from research import files
from research.data import vocab as vocab_lib
from research.errors import UserError

LOCK = '.lock'
PREVIOUS = '.previous-run'  # .previous-run-N, and .previous-run itself
MODEL_FILES = (
  'params.npz',
  'vocab.txt',
  'pretrained_words.txt',
  'tags.txt',
  'config.json',
)
_held = []  # (open lock file, path, created by this process)


def claim(workdir, overwrite=False, resume=False, log=None):
  """Claims the run directory `workdir` for this process and returns it.

  The claim is an exclusive `fcntl.flock` on workdir/.lock, taken before
  anything is read or written: a second process that asks for the same
  directory while the first runs is refused, whatever the timing, and the
  kernel drops the lock when its holder dies (even by SIGKILL), so a
  killed run can be resumed with nothing to clean up. A directory holding
  an earlier run's files is refused unless `overwrite` (they are moved into
  a new PREVIOUS-N, see the module docstring, and `log` says where), or
  `resume` (which needs the run's flags.txt). A path that cannot be made
  or written is a files.Fault naming it.
  """
  path = pathlib.Path(workdir)
  try:
    return _claim(path, overwrite, resume, log)
  except OSError as e:
    raise files.fault(e) from None


def _claim(path, overwrite, resume, log):
  if path.exists() and not path.is_dir():
    raise UserError(
      f'`workdir={path}` is a file, not a directory; choose another `workdir`'
    )
  parent = files.parent_file(path)
  if parent is not None:
    raise files.Fault(
      f'`workdir={path}`: {parent} is a file, not a directory; choose '
      'another `workdir`'
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
  others = [
    p for p in path.iterdir()
    if p.name != LOCK and not p.name.startswith(PREVIOUS)
  ]  # fmt: skip
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
    previous = _move_aside(path, others)
    if log is not None:
      log(
        f'moved the earlier run of {path} into {previous} (kept: '
        f'`rm -r {previous}` deletes it)'
      )
  lock.seek(0)
  lock.truncate()
  lock.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
  lock.flush()
  return path


def previous_runs(path):
  """The earlier runs kept in `path`, oldest first, with their N (0 for a
  .previous-run/ of an older version)."""
  found = []
  for p in pathlib.Path(path).glob(f'{PREVIOUS}*'):
    m = re.fullmatch(re.escape(PREVIOUS) + r'(?:-(\d+))?', p.name)
    if m and p.is_dir():
      found.append((int(m.group(1) or 0), p))
  return sorted(found)


def _move_aside(path, names):
  """Moves the files `names` of `path` into a new path/PREVIOUS-N; returns
  it. Nothing is deleted: each overwrite keeps its own."""
  last = max((n for n, _ in previous_runs(path)), default=0)
  previous = path / f'{PREVIOUS}-{last + 1}'
  previous.mkdir()
  for p in names:
    p.rename(previous / p.name)
  files.fsync_dir(path)
  return previous


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


def json_text(obj):
  return json.dumps(obj, indent=2, sort_keys=True) + '\n'


def write_json(path, obj):
  """Writes `obj` as JSON into `path`, atomically (files.write_json)."""
  return files.write_json(path, obj)


def read_json(path):
  return json.loads(pathlib.Path(path).read_text())


class JsonlWriter:
  """Appends one JSON object per line, flushed at once, after the rows
  `first` (a resumed run's history), which replace the file's contents
  atomically: a kill never leaves it emptied."""

  def __init__(self, path, first=()):
    text = ''.join(json.dumps(row, sort_keys=True) + '\n' for row in first)
    files.write_text(path, text)
    try:
      self._f = open(path, 'a')
    except OSError as e:
      raise files.fault(e, path) from None

  def write(self, row):
    try:
      self._f.write(json.dumps(row, sort_keys=True) + '\n')
      self._f.flush()
    except OSError as e:
      raise files.fault(e, self._f.name) from None

  def close(self):
    self._f.close()


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def model_files(params, vocab, tags, config):
  """{file name: its bytes} of what `load_model` needs to tag new text."""
  buffer = io.BytesIO()
  np.savez(buffer, **{k: np.asarray(v) for k, v in params.items()})
  return {
    'params.npz': buffer.getvalue(),
    'vocab.txt': '\n'.join(vocab.words) + '\n',
    'pretrained_words.txt': '\n'.join(vocab_lib.consulted(vocab.known)) + '\n',
    'tags.txt': '\n'.join(tags) + '\n',
    'config.json': json_text(config),
  }


def save_model(path, params, vocab, tags, config, outputs=None):
  """Writes what `load_model` needs to tag new text, each file atomically,
  into `outputs` (a files.Outputs of `path`, sealed by the caller once the
  run's other outputs are written) or, without one, sealed at once."""
  own = outputs is None
  outputs = outputs or files.Outputs(path)
  for name, data in model_files(params, vocab, tags, config).items():
    outputs.write(name, data)
  if own:
    outputs.seal()
  return outputs


def load_model(path):
  """Returns (params, vocab, tags, config) saved by `save_model`, each file
  checked against the run's manifest."""
  path = pathlib.Path(path)
  missing = [n for n in MODEL_FILES if not (path / n).is_file()]
  if missing:
    kept = [p for _, p in previous_runs(path) if (p / 'params.npz').is_file()]
    raise UserError(
      f'{path}: not a trained run directory (missing '
      f'{", ".join(missing)}'
      + (f'; an overwritten run is in {kept[-1]}' if kept else '')
      + '); pass the directory of a finished experiments.train run'
    )
  if files.sealed(path) is None and not (path / 'result.json').is_file():
    raise UserError(
      f'{path}: its run stopped while writing its outputs (no '
      f'{files.MANIFEST}); run the same train command with `resume` to '
      'finish them'
    )
  files.verify(path, MODEL_FILES)
  try:
    with np.load(path / 'params.npz') as f:
      params = {k: f[k] for k in f.files}
    words = (path / 'vocab.txt').read_text(encoding='utf-8').split('\n')[:-1]
    known = (
      (path / 'pretrained_words.txt')
      .read_text(encoding='utf-8')
      .split('\n')[:-1]
    )
    tags = (path / 'tags.txt').read_text().split()
    config = read_json(path / 'config.json')
  except (zipfile.BadZipFile, EOFError, ValueError, UnicodeDecodeError) as e:
    raise UserError(
      f'{path}: a damaged model file ({type(e).__name__}: '
      f'{str(e).splitlines()[0][:100] if str(e) else "cut short"}); train it '
      'again, or run its train command with `resume`'
    ) from None
  vocab = vocab_lib.Vocab(words, frozenset(w for w in known if w))
  return params, vocab, tags, config
