"""Which evaluation's parameters a run keeps: the last, or the best dev F1."""

import jax
import numpy as np

SELECTIONS = ('last', 'best_dev')


def keeper(select, n_models):
  """What keeps the parameters `select` asks for: None for the last, a
  BestDev for the best dev F1 (of one model: a run or an ensemble)."""
  if select not in SELECTIONS or (select != 'last' and n_models > 1):
    raise ValueError(f"select {select!r}: 'last', or 'best_dev' of one model")
  return BestDev() if select == 'best_dev' else None


class BestDev:
  """The parameters of the evaluation with the best dev F1 so far (the
  first of equals), a host copy: the training state's buffers are donated
  to the next compiled call."""

  def __init__(self):
    self.f1, self.params, self.dev = -1.0, None, None
    self.step = self.epoch = None

  def offer(self, row, params):
    """Keeps `params` if the row's dev F1 beats the best so far."""
    if row['dev']['f1'] > self.f1:
      self.f1, self.dev = row['dev']['f1'], row['dev']
      self.step, self.epoch = row['step'], row['epoch']
      self.params = jax.tree.map(np.array, params)

  def get(self):
    """(the parameters as a flat dict, the JSON record) for a checkpoint."""
    record = {
      'f1': self.f1,
      'dev': self.dev,
      'step': self.step,
      'epoch': self.epoch,
    }
    return (self.params or {}), record

  def set(self, params, record):
    """Restores what `get` returned."""
    self.f1, self.dev = record['f1'], record['dev']
    self.step, self.epoch = record['step'], record['epoch']
    self.params = jax.tree.map(np.asarray, params) if params else None

  def selected(self):
    return {'rule': 'best dev F1', 'step': self.step, 'epoch': self.epoch}
