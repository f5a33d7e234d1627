"""What a run writes to disk: atomic, verified, and its faults as one line.

Every file a run leaves (params.npz, result.json, config.json, vocab.txt,
tags.txt, flags.txt, the results page, plots, the data cache) is written
by `write_with`: into a temporary file beside its destination, flushed and
fsync'ed, then renamed over it (POSIX rename replaces a file atomically),
and the directory fsync'ed. A reader sees the old file or the new one,
never a part; a write cut short (a kill, a full disk) leaves the old file
and at most a `.NAME.*.tmp` beside it, which nothing reads.

A file's checksum is its SHA-256 (`sha256`); a set of files written
together is sealed by a manifest (`seal`, `verify`) written after them, so
files of two different writes are never taken as one.

An OSError (no space, no permission, a read-only file system, a parent
that is a file) becomes a `Fault`: one line naming the path, and for a
full disk how much space the write needed and how much was free.
"""

import errno
import hashlib
import json
import os
import pathlib
import shutil
import time

from research.errors import UserError

MANIFEST = 'manifest.json'
# Seconds this process spent on integrity: hashing (files' SHA-256 here,
# checkpoints' CRC-32 in research.training.checkpoint) and fsync; a run reports
# them.
SPENT = {'checksums': 0.0, 'fsyncs': 0.0}


class spending:
  """Adds the time of a `with` block to SPENT[part]."""

  def __init__(self, part):
    self.part = part

  def __enter__(self):
    self.t0 = time.perf_counter()

  def __exit__(self, *exc):
    SPENT[self.part] += time.perf_counter() - self.t0


class Fault(UserError):
  """A fault of the file system (an OSError), said in one line."""

  def __init__(self, message, errno_=None):
    super().__init__(message)
    self.errno = errno_

  @property
  def full(self):
    return self.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path):
  """Free bytes on the file system of `path` (or of its nearest existing
  parent); None when it cannot be told."""
  path = pathlib.Path(path).absolute()
  for p in (path, *path.parents):
    try:
      return shutil.disk_usage(p).free
    except OSError:
      continue
  return None


def megabytes(n):
  return f'{n / 2**20:,.1f} MB'


def fault(e, path=None, needed=None):
  """The one-line Fault of an OSError `e` met writing `path` (`needed`: the
  bytes the write needed, when known)."""
  where = path or e.filename or 'a file'
  code = e.errno
  if code in (errno.ENOSPC, errno.EDQUOT):
    free = free_bytes(where)
    need = f'; it needed {megabytes(needed)}' if needed else ''
    have = f', {megabytes(free)} free' if free is not None else ''
    return Fault(
      f'no space left on the device writing {where}{need}{have}', code
    )
  if code in (errno.EACCES, errno.EPERM):
    return Fault(f'permission denied writing {where}; make it writable', code)
  if code == errno.EROFS:
    return Fault(f'{where} is on a read-only file system', code)
  if code in (errno.ENOTDIR, errno.EEXIST) and parent_file(where):
    return Fault(
      f'{where}: {parent_file(where)} is a file, not a directory', code
    )
  reason = e.strerror or type(e).__name__
  return Fault(f'{where}: {reason} (errno {code})', code)


def parent_file(path):
  """The nearest ancestor of `path` that is a file, or None."""
  for p in pathlib.Path(path).absolute().parents:
    if p.is_file():
      return p
  return None


def fsync_dir(directory):
  """Makes a rename in `directory` durable (a no-op where directories
  cannot be opened)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    with spending('fsyncs'):
      os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def write_with(path, write, needed=None):
  """Writes `path` atomically: `write(f)` fills a binary temporary file in
  the same directory, which is fsync'ed and renamed over `path`. Returns
  the path. An OSError leaves `path` as it was and raises its Fault."""
  path = pathlib.Path(path)
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    with open(tmp, 'wb') as f:
      write(f)
      f.flush()
      with spending('fsyncs'):
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _discard(tmp)
    raise fault(e, path, needed) from None
  except BaseException:
    _discard(tmp)
    raise
  fsync_dir(path.parent)
  return path


def _discard(tmp):
  try:
    tmp.unlink(missing_ok=True)
  except OSError:
    pass


def write_bytes(path, data):
  return write_with(path, lambda f: f.write(data), needed=len(data))


def write_text(path, text):
  return write_bytes(path, text.encode('utf-8'))


def write_json(path, obj):
  return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def sha256(path):
  """The SHA-256 of a file's bytes (hex)."""
  h = hashlib.sha256()
  with spending('checksums'), open(path, 'rb') as f:
    while chunk := f.read(1 << 22):
      h.update(chunk)
  return h.hexdigest()


def sha256_bytes(data):
  with spending('checksums'):
    return hashlib.sha256(data).hexdigest()


class Outputs:
  """A run's output files, written together: `write` writes each
  atomically (one a resumed run would write with the same bytes is left
  as it is), `seal` then writes the manifest of them all. Until it is
  sealed, a reader (`verify`) refuses a file the manifest does not vouch
  for, so new files are never taken beside old ones."""

  def __init__(self, directory):
    self.directory = pathlib.Path(directory)
    self.entries = {}

  def write(self, name, data):
    if isinstance(data, str):
      data = data.encode('utf-8')
    digest = sha256_bytes(data)
    if not unchanged(self.directory, name, len(data), digest):
      write_bytes(self.directory / name, data)
    self.entries[name] = {'bytes': len(data), 'sha256': digest}

  def seal(self):
    write_json(self.directory / MANIFEST, {'files': self.entries})


def sealed(directory):
  """{name: entry} of directory's manifest, None when there is none; a
  manifest that cannot be read is a UserError."""
  path = pathlib.Path(directory) / MANIFEST
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())['files']
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(
      f'{path} is damaged ({type(e).__name__}): {_RERUN}'
    ) from None


_RERUN = (
  'its run was cut short while writing or the file changed since; run '
  'the same train command with `resume` to write it again'
)


def unchanged(directory, name, size, digest):
  """Whether directory/name is sealed, intact, with `size` bytes of SHA-256
  `digest`: a resumed run then leaves it as it is."""
  try:
    entry = (sealed(directory) or {}).get(name)
  except UserError:
    return False
  path = pathlib.Path(directory) / name
  return (
    entry == {'bytes': size, 'sha256': digest}
    and path.is_file()
    and sha256(path) == digest
  )


def verify(directory, names):
  """Checks each of `names` against directory's manifest; a file that
  fails (or that the manifest lacks) is a UserError naming it. A
  directory without a manifest (written before manifests were) passes."""
  entries = sealed(directory)
  if entries is None:
    return
  for name in names:
    path = pathlib.Path(directory) / name
    entry = entries.get(name)
    if entry is None:
      raise UserError(f'{path} is not in {directory}/{MANIFEST}: {_RERUN}')
    if sha256(path) != entry['sha256']:
      raise UserError(
        f'{path} does not match its checksum in {directory}/{MANIFEST} '
        f'(damaged, or not the file its run wrote): {_RERUN}'
      )
