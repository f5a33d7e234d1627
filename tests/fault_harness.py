"""Runs a program with one fault injected, as a user's process meets it.

  python -m tests.fault_harness FAULT experiments.ENTRY [flags...]
  python -m tests.fault_harness FAULT outputs DIR FILES.pickle
  python -m tests.fault_harness FAULT page PAGE RUN_DIR...

The second form writes the files of FILES.pickle ({name: bytes}) into DIR
as a run writes its outputs (research.files.Outputs: each atomically,
then the manifest), with nothing else loaded; the third writes the results
page PAGE of RUN_DIRs (research.reports.results_page.write, as `report` does).

FAULT is one of
  none                 no fault; each rename is listed on stderr
  kill-before:N        SIGKILL at the N-th rename of an atomic write, before it
  kill-after:N         ... just after it
  enospc:NAME          writing the file NAME fails (no space left) halfway
  eacces:NAME          writing the file NAME fails (permission denied)
  erofs:NAME           writing the file NAME fails (read-only file system)
  disk-full            the file system says it has no free space
  orbax-enospc         orbax's checkpoint write fails as tensorstore's does
                       on a full disk (the space check passed)
  kill-checkpoint:N    SIGKILL while the N-th checkpoint is being written

None of them needs root or a real full disk.
"""

import errno
import os
import pickle
import runpy
import signal
import sys
import types

from research import files


def _renames(before, after):
  """os for research.files, whose replace is counted (and may kill)."""
  count = [0]

  def replace(src, dst):
    count[0] += 1
    if count[0] == before:
      os.kill(os.getpid(), signal.SIGKILL)
    os.replace(src, dst)
    print(f'rename {count[0]}: {os.path.basename(dst)}', file=sys.stderr)
    if count[0] == after:
      os.kill(os.getpid(), signal.SIGKILL)

  shim = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os)})
  shim.replace = replace
  files.os = shim


def _failing(name, code):
  """Makes the atomic write of the file `name` fail with `code` halfway."""
  write_with = files.write_with

  def faulty(path, write, needed=None):
    if os.path.basename(path) != name:
      return write_with(path, write, needed)

    def half(f):
      write(f)
      f.truncate(f.tell() // 2)
      raise OSError(code, os.strerror(code), str(path))

    return write_with(path, half, needed)

  files.write_with = faulty


def _no_space():
  import shutil  # noqa: PLC0415

  usage = shutil.disk_usage
  shutil.disk_usage = lambda p: usage(p)._replace(free=0)


def _orbax_full_disk():
  import orbax.checkpoint as ocp  # noqa: PLC0415

  from research.training import checkpoint  # noqa: PLC0415

  checkpoint.Checkpointer._room_for = lambda *a: None

  def save(self, step, *a, **k):
    raise ValueError(
      'RESOURCE_EXHAUSTED: Error writing "0/0.0.0" in OCDBT database at '
      f'local file "{self.directory}/{step}.orbax-checkpoint-tmp/state": '
      'Failed to write 642149 bytes to file 7: No space left on device '
      "[os_error_code='28']"
    )

  ocp.CheckpointManager.save = save


def _kill_in_checkpoint(n):
  """SIGKILL once the N-th save has begun writing in the background."""
  from research.training import checkpoint  # noqa: PLC0415

  save = checkpoint.Checkpointer.save
  count = [0]

  def killing(self, *args, **kwargs):
    save(self, *args, **kwargs)
    count[0] += 1
    if count[0] == n:
      os.kill(os.getpid(), signal.SIGKILL)

  checkpoint.Checkpointer.save = killing


def inject(fault):
  kind, _, arg = fault.partition(':')
  codes = {'enospc': errno.ENOSPC, 'eacces': errno.EACCES, 'erofs': errno.EROFS}
  if kind == 'none':
    _renames(0, 0)
  elif kind == 'kill-before':
    _renames(int(arg), 0)
  elif kind == 'kill-after':
    _renames(0, int(arg))
  elif kind in codes:
    _failing(arg, codes[kind])
  elif kind == 'disk-full':
    _no_space()
  elif kind == 'orbax-enospc':
    _orbax_full_disk()
  elif kind == 'kill-checkpoint':
    _kill_in_checkpoint(int(arg))
  else:
    raise SystemExit(f'fault_harness: unknown fault {fault!r}')


def write_outputs(directory, pickled):
  with open(pickled, 'rb') as f:
    named = pickle.load(f)
  outputs = files.Outputs(directory)
  for name, data in named.items():
    outputs.write(name, data)
  outputs.seal()


def main(argv):
  fault, target, *rest = argv
  inject(fault)
  if target == 'outputs':
    write_outputs(*rest)
    return
  if target == 'page':
    from research.reports import results_page  # noqa: PLC0415

    results_page.write(rest[1:], rest[0], overwrite=True)
    return
  sys.argv = [target.rpartition('.')[2], *rest]
  runpy.run_module(target, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
  main(sys.argv[1:])
