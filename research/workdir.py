"""A run directory: resolved flags, metrics.jsonl, result.json, parameters.

Layout written by `experiments.train`:
  flags.txt      the resolved flags (reusable with --flagfile)
  config.json    model / training configuration, for loading the model
  metrics.jsonl  one JSON object per evaluation
  result.json    final dev/test scores and throughput
  params.npz     trained parameters (a flat dict of arrays)
  vocab.txt      one word per line (row i of L)
  tags.txt       one tag per line (class i)
  pretrained_words.txt  the pretrained words the normalization consults
"""

import json
import pathlib

import numpy as np

from research import vocab as vocab_lib
from research.errors import UserError


def check(path, overwrite=False):
  """Returns `path` as a Path, refusing one that holds files unless
  `overwrite` (so nothing of an earlier run is lost by accident)."""
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise UserError(
      f'--workdir={path} is a file, not a directory; choose another --workdir'
    )
  if path.is_dir() and any(path.iterdir()) and not overwrite:
    raise UserError(
      f'--workdir={path} already holds files from an earlier '
      'run; choose a new --workdir, or pass --overwrite to '
      'replace them'
    )
  return path


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
    '\n'.join(sorted(vocab.known)) + '\n', encoding='utf-8'
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
      f'{", ".join(missing)}); pass the --workdir of a finished '
      'experiments.train run'
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
