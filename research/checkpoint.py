"""Checkpoints of a training run, for exact resume (orbax-checkpoint).

A `Checkpointer` is one directory of an orbax `CheckpointManager`: each
checkpoint (a subdirectory named by its step) holds the training state's
arrays and a JSON record of where the loop stands (research.engine.fit
writes both). Orbax writes a checkpoint into a temporary directory and
renames it when complete, so a checkpoint cut short by a killed process is
never listed, and `latest` is the newest complete one. Only the last `keep`
are kept.

PRNG keys are saved as their raw key data (`jax.random.key_data`) and
wrapped again on restore.
"""

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from research.errors import UserError


class Checkpointer:
  """Checkpoints every `every` steps (0: at every evaluation) into
  `directory`; `child(name)` is a sub-run's own Checkpointer."""

  def __init__(self, directory, every=0, keep=3):
    self.directory = pathlib.Path(directory).resolve()
    self.every = int(every)
    self.keep = keep
    self._manager = None

  def child(self, name):
    return Checkpointer(self.directory / name, self.every, self.keep)

  @property
  def manager(self):
    if self._manager is None:
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=self.keep,
          create=True,
          enable_async_checkpointing=False,
        ),
      )
    return self._manager

  def latest(self):
    """The step of the newest complete checkpoint, or None."""
    if not self.directory.is_dir():
      return None
    return self.manager.latest_step()

  def save(self, step, arrays, record):
    """Saves a pytree of arrays and a JSON-able record as checkpoint `step`."""
    leaves = [_savable(a) for a in jax.tree.leaves(arrays)]
    self.manager.save(
      step,
      args=ocp.args.Composite(
        arrays=ocp.args.StandardSave({str(i): a for i, a in enumerate(leaves)}),
        record=ocp.args.JsonSave(record),
      ),
    )
    self.manager.wait_until_finished()

  def restore(self, like):
    """(arrays shaped like the pytree `like`, record) of the newest
    checkpoint; its arrays take the shardings of like's."""
    step = self.latest()
    leaves, treedef = jax.tree.flatten(like)
    target = {str(i): _savable(a) for i, a in enumerate(leaves)}
    try:
      got = self.manager.restore(
        step,
        args=ocp.args.Composite(
          arrays=ocp.args.StandardRestore(target),
          record=ocp.args.JsonRestore(),
        ),
      )
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise UserError(
        f'{self.directory}/{step}: a checkpoint of a different run '
        f'({type(e).__name__}: {str(e).splitlines()[0][:120]}); resume with '
        'the flags the run was started with, or start a new --workdir'
      ) from None
    restored = [_like(got.arrays[str(i)], a) for i, a in enumerate(leaves)]
    return jax.tree.unflatten(treedef, restored), got.record


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
