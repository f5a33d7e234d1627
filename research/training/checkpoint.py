"""Checkpoints of a training run, for exact resume (orbax-checkpoint).

A `Checkpointer` is one directory of an orbax `CheckpointManager`: each
checkpoint (a subdirectory named by its step) holds the training state's
arrays and a JSON record of where the loop stands (research.training.resume
writes both). Orbax writes a checkpoint into a temporary directory and
renames it when complete, so a checkpoint cut short by a killed process is
never listed, and `latest` is the newest complete one. Only the last `keep`
are kept.

PRNG keys are saved as their raw key data (`jax.random.key_data`) and
wrapped again on restore.

What is restored is verified: orbax keeps no checksum of the arrays it
writes, so the record holds the CRC-32 of every array's bytes and each
array's shape and dtype (`_fingerprint`), computed from the host copy that
is saved. `restore` takes the newest checkpoint whose record reads, whose
arrays restore and whose CRCs match; one that fails is named, moved aside
(to `damaged-STEP`, never deleted) and the one before it tried. A
checkpoint whose shapes differ from the run's is of another run. A save
that would not fit the disk is refused before it starts (`save`), and a
file system fault met by orbax's writer is one line (`_storage_fault`).
"""

import contextlib
import errno
import os
import pathlib
import re
import time
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from research import files
from research.errors import UserError

DAMAGED = 'damaged-'
# Room kept free beyond a checkpoint's arrays: orbax's metadata files.
_SLACK = 1 << 20


class Checkpointer:
  """Checkpoints every `every` steps, or (every = 0) at the evaluations at
  least `min_seconds` after the previous save (or the start), and always
  at the end of a training (`due`), into `directory`, keeping the last
  `keep`; a run resumes from the newest only when `resume`. `child(name)`
  is a sub-run's own Checkpointer.

  A save costs a copy of the training state to the host and starting its
  write (about 80 ms for `conll_best.flags`' state on a GPU, where an epoch
  takes about 0.3 s), so a killed run's lost work is bounded by time, not
  by evaluations: it loses at most min_seconds of training."""

  def __init__(
    self, directory, every=0, keep=3, resume=False, min_seconds=0, log=print
  ):
    self.directory = pathlib.Path(directory).resolve()
    self.log = log
    self.every = int(every)
    self.keep = keep
    self.resume = resume
    self.min_seconds = float(min_seconds)
    self._manager = None
    self._since = time.monotonic()
    self._writing = None  # the step of the save last begun

  def child(self, name):
    return Checkpointer(
      self.directory / name, self.every, self.keep, self.resume,
      self.min_seconds, self.log,
    )  # fmt: skip

  def due(self, last):
    """Whether to save at a boundary the loop marks for a checkpoint: the
    `last` one of a training, each of a step cadence (every > 0), or an
    evaluation min_seconds after the previous save."""
    waited = time.monotonic() - self._since
    return last or self.every > 0 or waited >= self.min_seconds

  @property
  def asynchronous(self):
    """Whether saves are written in the background: by one process (the
    state is copied to host memory first, so the training program may
    reuse its buffers at once); several processes save each their shards
    and wait."""
    return jax.process_count() == 1

  @property
  def manager(self):
    if self._manager is None:
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=self.keep,
          create=True,
          enable_async_checkpointing=self.asynchronous,
        ),
      )
    return self._manager

  def wait(self):
    """Returns once every save begun has been written and renamed; a file
    system fault met while writing is a files.Fault."""
    if self._manager is not None:
      with _storage_faults(self.directory / str(self._writing)):
        self._manager.wait_until_finished()

  def latest(self):
    """The step of the newest complete checkpoint, or None."""
    if not self.directory.is_dir():
      return None
    self.wait()
    return self.manager.latest_step()

  def save(self, step, state, extra, record):
    """Saves checkpoint `step`: the pytree `state`, a flat dict `extra` of
    arrays (any keys; {} for none) and a JSON-able record, with the
    fingerprint of the arrays. With one process it returns once the state
    is copied to the host, and the files are written in the background
    (`wait`); the previous save is finished first. A save the disk has no
    room for is a files.Fault before anything is written."""
    self.wait()
    leaves = [_savable(a) for a in jax.tree.leaves(state)]
    if self.asynchronous:
      leaves = [np.array(a, copy=True) for a in leaves]
    extras = [np.asarray(v) for v in extra.values()]
    self._room_for(step, leaves + extras)
    # One process holds every array whole; with several, each writes its
    # shards and no host sees the whole array: no fingerprint then.
    fingerprint = (
      {'state': _fingerprint(leaves), 'extra': _fingerprint(extras)}
      if self.asynchronous
      else None
    )
    record = dict(record, extra_keys=list(extra), fingerprint=fingerprint)
    items = {
      'state': ocp.args.StandardSave({str(i): a for i, a in enumerate(leaves)}),
      'record': ocp.args.JsonSave(record),
    }
    if extra:
      items['extra'] = ocp.args.StandardSave(
        {str(i): v for i, v in enumerate(extras)}
      )
    self._writing = step
    with _storage_faults(self.directory / str(step)):
      self.manager.save(step, args=ocp.args.Composite(**items))
      if not self.asynchronous:
        self.wait()
    self._since = time.monotonic()

  def _room_for(self, step, arrays):
    # (nbytes of a jax.Array is its global size: an upper bound for one
    # process's shards, read without a copy to the host)
    needed = sum(_nbytes(a) for a in arrays) + _SLACK
    free = files.free_bytes(self.directory)
    if free is not None and free < needed:
      raise files.Fault(
        f'no space left on the device for checkpoint {step} in '
        f'{self.directory}: it needs up to {files.megabytes(needed)}, '
        f'{files.megabytes(free)} free',
        errno.ENOSPC,
      )

  def restore(self, like):
    """(state shaped like the pytree `like`, the extra dict, the record) of
    the newest intact checkpoint; the state's arrays take like's
    shardings. A damaged checkpoint is logged by `log`, moved aside and
    the one before it tried; none intact is a UserError."""
    leaves, treedef = jax.tree.flatten(like)
    target = {str(i): _savable(a) for i, a in enumerate(leaves)}
    damaged = []
    while (step := self.latest()) is not None:
      where = self.directory / str(step)
      try:
        state, extra, record = self._restore(step, target)
      except _Damaged as e:
        damaged.append(f'{step} ({e})')
        self.log(f'checkpoint {where} is damaged ({e}); trying the one before')
        self._move_aside(step)
        continue
      state = jax.tree.unflatten(
        treedef, [_like(state[str(i)], a) for i, a in enumerate(leaves)]
      )
      return state, extra, record
    raise UserError(
      f'{self.directory}: no intact checkpoint to resume from (damaged: '
      f'{", ".join(damaged)}, moved to {DAMAGED}STEP); start the run again '
      'without `resume` (in a new `workdir`, or with `overwrite`)'
    )

  def _restore(self, step, target):
    """(state dict, extra dict, record) of checkpoint `step`, verified."""
    where = self.directory / str(step)
    try:
      record = self.manager.restore(
        step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
      ).record
      keys = record['extra_keys']
    except Exception as e:  # noqa: BLE001 (orbax's, tensorstore's, json's)
      raise _Damaged(f'its record does not read: {_first_line(e)}') from None
    fingerprint = record.pop('fingerprint', None)
    if fingerprint is not None:
      wanted = [_layout(a) for a in target.values()]
      saved = [[shape, dtype] for shape, dtype, _ in fingerprint['state']]
      if saved != wanted:
        raise UserError(
          f'{where}: a checkpoint of a different run (its arrays have other '
          'shapes); resume with the flags the run was started with, or start '
          'it in a new run directory'
        )
    items = {
      'state': ocp.args.StandardRestore(target),
      'record': ocp.args.JsonRestore(),
    }
    if keys:
      items['extra'] = ocp.args.StandardRestore()
    try:
      got = self.manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError) as e:
      if fingerprint is None:  # a checkpoint saved without one
        raise UserError(
          f'{where}: a checkpoint of a different run ({type(e).__name__}: '
          f'{_first_line(e)}); resume with the flags the run was started '
          'with, or start it in a new run directory'
        ) from None
      raise _Damaged(f'its arrays do not read: {_first_line(e)}') from None
    except Exception as e:  # noqa: BLE001
      raise _Damaged(f'its arrays do not read: {_first_line(e)}') from None
    state = dict(got.state)
    extra = [np.asarray(got.extra[str(i)]) for i in range(len(keys))]
    if fingerprint is not None:
      ordered = [np.asarray(state[str(i)]) for i in range(len(state))]
      for part, arrays in (('state', ordered), ('extra', extra)):
        if _fingerprint(arrays) != [list(x) for x in fingerprint[part]]:
          raise _Damaged(f'its {part} arrays fail their CRC-32')
    record.pop('extra_keys')
    return state, dict(zip(keys, extra)), record

  def _move_aside(self, step):
    """Moves a damaged checkpoint out of orbax's sight, kept for a look."""
    source = self.directory / str(step)
    target = self.directory / f'{DAMAGED}{step}'
    n = 1
    while target.exists():
      n += 1
      target = self.directory / f'{DAMAGED}{step}.{n}'
    source.rename(target)
    self._manager = None  # lists its steps anew


class _Damaged(Exception):
  """A checkpoint that does not read back as it was written."""


def _nbytes(a):
  return a.nbytes if hasattr(a, 'nbytes') else np.asarray(a).nbytes


def _layout(a):
  """[shape, dtype] of an array, without copying it to the host."""
  dtype = a.dtype if hasattr(a, 'dtype') else np.asarray(a).dtype
  return [list(np.shape(a)), str(dtype)]


def _first_line(e):
  text = str(e).strip().splitlines()
  line = text[0] if text else type(e).__name__
  return line.split('. See full TensorStore details')[0][:160]


def _fingerprint(arrays):
  """[shape, dtype, CRC-32 of the bytes] of each array (host copies)."""
  out = []
  with files.spending('checksums'):
    for a in arrays:
      a = np.ascontiguousarray(np.asarray(a))
      crc = zlib.crc32(a.view(np.uint8).reshape(-1)) if a.size else 0
      out.append([list(a.shape), str(a.dtype), crc])
  return out


_OS_ERROR = re.compile(r"os_error_code='?(\d+)")


@contextlib.contextmanager
def _storage_faults(where):
  """Turns a file system fault that orbax or tensorstore raise (their
  message carries the OS error code) into a files.Fault of `where`."""
  try:
    yield
  except OSError as e:
    raise files.fault(e, where) from None
  except Exception as e:
    found = _OS_ERROR.search(str(e))
    if found is None:
      raise
    code = int(found.group(1))
    raise files.fault(OSError(code, os.strerror(code)), where) from None


def _savable(a):
  if isinstance(a, jax.Array) and jax.dtypes.issubdtype(
    a.dtype, jax.dtypes.prng_key
  ):
    return jax.random.key_data(a)
  if isinstance(a, (int, float, np.number, np.ndarray)):
    return np.asarray(a)
  return a


def _like(restored, like):
  if isinstance(like, jax.Array) and jax.dtypes.issubdtype(
    like.dtype, jax.dtypes.prng_key
  ):
    return jax.random.wrap_key_data(restored, impl=jax.random.key_impl(like))
  return restored
