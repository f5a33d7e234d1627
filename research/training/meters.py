"""Training-metric meters: a stack's per-step metrics, summed between rows.

A compiled call of `engine.Loop` returns, per configuration, the sum of
each metric over the steps it took before it diverged, how many those were
and the last finite values. `TrainMeter` adds those up on the host between
two evaluation rows; `means` gives each configuration's mean since the last
row (None for a configuration that took no step).
"""

import numpy as np


class TrainMeter:
  """Sums of S configurations' M metrics since the last `take`."""

  def __init__(self, S, names):
    self.names = tuple(names)
    self.S, self.M = S, len(self.names)
    self.last_SxM = np.full((S, self.M), np.nan)
    self.reset()

  def reset(self):
    self.sum_SxM = np.zeros((self.S, self.M))
    self.count_S = np.zeros(self.S, np.int64)
    self.steps = 0  # steps of the loop since the last row (any config)

  def add(self, sum_SxM, count_S, last_SxM, steps):
    """One compiled call's (sum, count, last) of `steps` steps."""
    count_S = np.asarray(count_S)
    self.last_SxM = np.where(count_S[:, None] > 0, last_SxM, self.last_SxM)
    self.sum_SxM = self.sum_SxM + sum_SxM
    self.count_S = self.count_S + count_S
    self.steps += steps

  def means(self):
    """{'train_<metric>': [S] means since the last row}, None per
    configuration that took no step, and None when the loop took none."""
    out = {}
    for j, name in enumerate(self.names):
      out[f'train_{name}'] = (
        [
          float(self.sum_SxM[i, j] / self.count_S[i])
          if self.count_S[i]
          else None
          for i in range(self.S)
        ]
        if self.steps
        else None
      )
    return out

  def take(self):
    """`means`, then `reset` (a row was made)."""
    out = self.means()
    self.reset()
    return out

  def shown(self, sum_SxM, count_S):
    """A progress line's metrics: one call's mean over all configurations."""
    n = max(int(np.sum(count_S)), 1)
    return ' '.join(
      f'{m} {sum_SxM[:, j].sum() / n:.4f}' for j, m in enumerate(self.names)
    )

  def record(self):
    """The JSON-able state (for a checkpoint)."""
    return {
      'sum': self.sum_SxM.tolist(),
      'count': self.count_S.tolist(),
      'last': [[None if np.isnan(v) else v for v in r] for r in self.last_SxM],
      'since': self.steps,
    }

  def restore(self, record):
    S, M = self.S, self.M
    self.sum_SxM = np.asarray(record['sum'], np.float64).reshape(S, M)
    self.count_S = np.asarray(record['count'], np.int64)
    last = [[np.nan if v is None else v for v in r] for r in record['last']]
    self.last_SxM = np.asarray(last, np.float64).reshape(S, M)
    self.steps = int(record['since'])
