"""Resume bookkeeping: what a checkpoint holds beside the training state,
and how a run continues from it.

A checkpoint (research.training.checkpoint) holds the stack's `TrainState` and a
JSON record of where the loop stands: the step, the history of evaluation
rows, the training-metric sums since the last row (meters.TrainMeter) and
the caller's own record (e.g. the best-dev parameters' step, with those
parameters as extra arrays). A resumed run ends as an uninterrupted one
would: the data order and the PRNG keys follow from (seed, step).
"""

import copy


def save(checkpoint, loop, history, best=None):
  """Checkpoints `loop` (an engine.Loop) at its step, with the history
  and, when given, a selection.BestDev's parameters and record."""
  extra_tree, extra_record = best.get() if best is not None else ({}, None)
  # A copy: the record is written in the background
  # (research.training.checkpoint), while the run goes on appending to its
  # history.
  record = copy.deepcopy(
    {
      'step': loop.step,
      'history': history,
      **loop.meter.record(),
      'extra': extra_record,
    }
  )
  checkpoint.save(loop.step, loop.state, extra_tree, record)


def restore(checkpoint, loop, best=None, log=print, name=''):
  """Continues `loop` from the newest checkpoint when `checkpoint.resume`
  and there is one; returns the history it held ([] otherwise)."""
  if checkpoint is None or not checkpoint.resume:
    return []
  if checkpoint.latest() is None:
    log(f'{name}no checkpoint in {checkpoint.directory}: starting at step 0')
    return []
  state, extra_tree, record = checkpoint.restore(loop.state)
  loop.resume_at(record['step'], state)
  loop.meter.restore(record)
  if best is not None:
    best.set(extra_tree, record['extra'])
  log(
    f'{name}resumed at step {loop.step}/{loop.total_steps} from '
    f'{checkpoint.directory}'
  )
  return record['history']
