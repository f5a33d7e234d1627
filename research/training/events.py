"""TensorBoard event files of a run: each evaluation's scalars at its step.

`Events` writes one stream (a directory of event files, tensorboardX's
SummaryWriter) per configuration of a stack: a sweep's configurations side
by side, so that TensorBoard overlays them (`tensorboard --logdir runs/`).
metrics.jsonl stays the run's own record; these are for looking. tensorboardX
is imported when a writer is made, not with the library.

Tags, per stream and evaluation step:
  train/loss                   the mean training loss since the last row
  dev/f1, dev/precision, dev/recall, dev/loss (window models), dev/unseen_f1
  train_eval/...               the same of the training sample (eval_train)
  lr                           the learning rate of the epoch
  weight_norm                  ||theta|| of the weight matrices
  seconds/<part>               the run's wall-time parts so far (timing.PARTS)
"""

import math
import pathlib

import numpy as np

from research.training import classifier
from research.training import engine

SCORES = ('f1', 'precision', 'recall', 'loss')


class Events:
  """One TensorBoard stream per name, under `directory` ('' : directory
  itself). A resumed run (`start` > 0) purges what its streams hold from
  step `start` on, so that the steps trained again are not shown twice."""

  def __init__(self, directory, names=('',), start=0):
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (only when asked)

    directory = pathlib.Path(directory)
    self.names = tuple(names)
    self.writers = [
      SummaryWriter(
        logdir=str(directory / name if name else directory),
        purge_step=start or None,
        flush_secs=3600,  # flushed at each row (`write`)
      )
      for name in self.names
    ]

  def write(self, row, params, loop, seconds):
    """The scalars of an evaluation row of `loop` (engine.Loop) whose
    stacked `params` were scored: stream i gets configuration i's (or, one
    stream for a stack scored as one model, the first's)."""
    step = int(row['step'])
    epoch = max(0, math.ceil(step / loop.spe) - 1)
    # The epoch's rates (engine.Loop.epoch_hyper), from the host's copy.
    lr_S = np.asarray(loop.hyper.lr) / (1.0 + loop.lr_decay * epoch)
    for i, w in enumerate(self.writers):
      scalars = {'lr': lr_S[i]}
      if row.get('train_loss') is not None:
        scalars['train/loss'] = row['train_loss'][i]
      for split, prefix in (('dev', 'dev'), ('train', 'train_eval')):
        if row.get(split):
          scalars.update(_scores(row[split][i], prefix))
      scalars['weight_norm'] = classifier.weight_norm(engine.unstack(params, i))
      scalars.update({f'seconds/{k}': v for k, v in seconds.items()})
      for tag, value in scalars.items():
        if value is not None and np.isfinite(value):
          w.add_scalar(tag, float(value), step)
      w.flush()

  def close(self):
    for w in self.writers:
      w.close()


def _scores(scores, prefix):
  out = {f'{prefix}/{k}': scores[k] for k in SCORES if k in scores}
  if 'unseen' in scores:
    out[f'{prefix}/unseen_f1'] = scores['unseen']['f1']
  return out


def stream_name(objective, l2, seed):
  """A sweep configuration's stream: objective, L2 and seed."""
  return f'{objective}_l2={l2:g}_seed={seed}'
