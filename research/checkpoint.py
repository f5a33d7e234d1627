"""Checkpoints of a training run, for exact resume (orbax-checkpoint).

A `Checkpointer` is one directory of an orbax `CheckpointManager`: each
checkpoint (a subdirectory named by its step) holds the training state's
arrays and a JSON record of where the loop stands (research.resume
writes both). Orbax writes a checkpoint into a temporary directory and
renames it when complete, so a checkpoint cut short by a killed process is
never listed, and `latest` is the newest complete one. Only the last `keep`
are kept.

PRNG keys are saved as their raw key data (`jax.random.key_data`) and
wrapped again on restore.
"""

import pathlib
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from research.errors import UserError


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

  def __init__(self, directory, every=0, keep=3, resume=False, min_seconds=0):
    self.directory = pathlib.Path(directory).resolve()
    self.every = int(every)
    self.keep = keep
    self.resume = resume
    self.min_seconds = float(min_seconds)
    self._manager = None
    self._since = time.monotonic()

  def child(self, name):
    return Checkpointer(
      self.directory / name, self.every, self.keep, self.resume,
      self.min_seconds,
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
    """Returns once every save begun has been written and renamed."""
    if self._manager is not None:
      self._manager.wait_until_finished()

  def latest(self):
    """The step of the newest complete checkpoint, or None."""
    if not self.directory.is_dir():
      return None
    self.wait()
    return self.manager.latest_step()

  def save(self, step, state, extra, record):
    """Saves checkpoint `step`: the pytree `state`, a flat dict `extra` of
    arrays (any keys; {} for none) and a JSON-able record. With one process
    it returns once the state is copied to the host, and the files are
    written in the background (`wait`); the previous save is finished
    first."""
    self.wait()
    leaves = [_savable(a) for a in jax.tree.leaves(state)]
    if self.asynchronous:
      leaves = [np.array(a, copy=True) for a in leaves]
    items = {
      'state': ocp.args.StandardSave({str(i): a for i, a in enumerate(leaves)}),
      'record': ocp.args.JsonSave(dict(record, extra_keys=list(extra))),
    }
    if extra:
      items['extra'] = ocp.args.StandardSave(
        {str(i): np.asarray(v) for i, v in enumerate(extra.values())}
      )
    self.manager.save(step, args=ocp.args.Composite(**items))
    if not self.asynchronous:
      self.wait()
    self._since = time.monotonic()

  def restore(self, like):
    """(state shaped like the pytree `like`, the extra dict, the record) of
    the newest checkpoint; the state's arrays take like's shardings."""
    step = self.latest()
    leaves, treedef = jax.tree.flatten(like)
    target = {str(i): _savable(a) for i, a in enumerate(leaves)}
    where = f'{self.directory}/{step}'
    try:
      record = self.manager.restore(
        step, args=ocp.args.Composite(record=ocp.args.JsonRestore())
      ).record
      items = {
        'state': ocp.args.StandardRestore(target),
        'record': ocp.args.JsonRestore(),
      }
      if record['extra_keys']:
        items['extra'] = ocp.args.StandardRestore()
      got = self.manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise UserError(
        f'{where}: a checkpoint of a different run ({type(e).__name__}: '
        f'{str(e).splitlines()[0][:120]}); resume with the flags the run '
        'was started with, or start it in a new run directory'
      ) from None
    state = jax.tree.unflatten(
      treedef, [_like(got.state[str(i)], a) for i, a in enumerate(leaves)]
    )
    keys = record.pop('extra_keys')
    extra = {k: np.asarray(got.extra[str(i)]) for i, k in enumerate(keys)}
    return state, extra, record


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
