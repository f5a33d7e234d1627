"""Divergence reporting: what a run says when a configuration's loss or
gradients stop being finite.

The guard itself is inside the compiled step (`optim.apply_gradients`): a
configuration whose step fails it keeps the parameters of its last good
step and records that step in `TrainState.diverged`. A single run stops
with `Diverged` (one line, no parameters written); a stack reports the
diverged configurations and the others finish.
"""

import numpy as np

from research.errors import UserError

# The guard's bound on a step's loss (a mean per window or word): the
# objectives here start near log C, and a healthy run never comes near it.
MAX_LOSS = 1e6


class Diverged(UserError):
  """A single run whose loss or update stopped being finite."""


def diverged_at(diverged_S):
  """[S]: the 1-based step whose update was not finite, or None."""
  return [int(d) + 1 if d >= 0 else None for d in np.asarray(diverged_S)]


def check(diverged_S, last_loss_S, lr_S, name='', checkpoint_dir=None):
  """Raises Diverged for the first diverged configuration, if any.

  diverged_S: each configuration's diverged step (-1: none); last_loss_S:
  the loss of its last good step (nan: none); checkpoint_dir: where the
  last good checkpoint is, or None (or False).
  """
  diverged_S = np.asarray(diverged_S)
  if not np.any(diverged_S >= 0):
    return
  i = int(np.argmax(diverged_S >= 0))
  loss = last_loss_S[i]
  raise Diverged(
    f'{name}training diverged at step {diverged_S[i] + 1}: its loss was '
    f'not finite or above {MAX_LOSS:g}, or its gradients not finite '
    f'(loss of the last good step: '
    f'{"none" if np.isnan(loss) else f"{loss:.4g}"}); no parameters '
    'were written'
    + (
      f' (the last good checkpoint is in {checkpoint_dir})'
      if checkpoint_dir
      else ''
    )
    + f'; try a smaller `lr` (this run: {float(lr_S[i]):g})'
  )
