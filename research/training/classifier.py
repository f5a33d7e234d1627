"""The window classifiers' training step: objective, gradients, the task.

Gradients are taken with respect to the dense parameters and the *gathered*
word vectors E = L[words] ([B, K, d]), never the whole table. The word-vector
gradient then reaches L in one of two ways (`research.training.optim`):

* sparse (default): the lazy row update of the touched rows only, and of
  only those rows' optimizer state;
* dense: scatter into a zero [V, d] gradient and let optax update every row
  (what autodiff through the gather does; the baseline the sparse path is
  measured against, identical to it for plain SGD without L2 on L).

`optim.table_grads` makes that choice; the step hands over the data
gradients only, and the optimizer adds the L2 term's (`optim.add_l2`).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from research.formulas import losses
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import engine
from research.training import optim
from research.training import rows

OPTIMIZERS = optim.OPTIMIZERS


class TrainConfig(NamedTuple):
  """Static choices of a training run (hashable: part of the jit cache key)."""

  objective: str = 'xent'  # a name of research.formulas.objectives
  optimizer: str = 'adam'  # one of OPTIMIZERS
  batch_size: int = 256
  l2_embeddings: bool = False  # L2 covers L and L_case
  l2_biases: bool = False  # L2 covers b and c
  freeze_embeddings: bool = False  # L is never updated
  sparse: bool = True  # row-wise updates of L (see module docstring)
  packed_rows: bool = True  # optim.lazy_row_update, else its plain form
  grad: str = 'autodiff'  # or 'manual': the hand-derived backprop
  word_dropout: float = 0.0  # sentence task: a word reads <unk> with this p
  lr_decay: float = 0.0  # epoch e trains at lr / (1 + lr_decay * e)
  mesh: str = 'auto'  # the devices: 'auto' or 'CxD' (parallel.resolve)
  # Set by engine on the task each device runs: the devices its batch is
  # split across (parallel.shard_rows, parallel.across_data); 1 otherwise.
  data_devices: int = 1


def window_losses(
  params, E_NxKxd, casing_NxK, y_N, model_cfg, objective, key=None,
  data_devices=1, mean=False,
):  # fmt: skip
  """Per-window loss J_N of a window-level `objective` (its
  research.formulas.objectives record) from gathered word vectors E (L is
  not read); with `mean`, their mean (what a step differentiates)."""
  x_NxD = model_lib.concat_window(E_NxKxd, params['L_case'][casing_NxK])
  f_NxC = model_lib.class_scores(params, x_NxD, model_cfg, key, data_devices)
  J_N = objective.loss(f_NxC, y_N)
  return J_N.mean() if mean else J_N


def training_objective(
  params, words_NxK, casing_NxK, y_N, l2, model_cfg, cfg, objective, key=None
):
  """The full training objective: mean window loss + lambda/2 ||theta||^2
  (the L2 terms cfg says)."""
  data = window_losses(
    params, params['L'][words_NxK], casing_NxK, y_N, model_cfg, objective, key
  ).mean()
  return data + losses.l2_penalty(params, l2, cfg.l2_embeddings, cfg.l2_biases)


def batch_grads(dense, E, casing, y, model_cfg, cfg, objective, key):
  """(mean data loss, its grads w.r.t. the dense params, grad w.r.t. E);
  no L2 (the optimizer adds it, `optim.apply_gradients`)."""
  if cfg.grad == 'manual':
    from research.formulas import manual_grads  # noqa: PLC0415 (only when asked)

    loss, g_dense, g_E = manual_grads.batch_grads(
      dense, E, casing, y, model_cfg, objective
    )
  else:
    argnums = (0,) if cfg.freeze_embeddings else (0, 1)
    loss, grads = jax.value_and_grad(window_losses, argnums)(
      dense, E, casing, y, model_cfg, objective, key, cfg.data_devices, True
    )
    g_dense, g_E = grads[0], (grads[1] if len(grads) > 1 else None)
  return loss, g_dense, g_E


class ClassifierTask(NamedTuple):
  """The window classifier for `engine.Loop`; data = (words, casing, labels)
  device arrays of all training windows, visited in shuffled epochs."""

  model_cfg: model_lib.ModelConfig
  cfg: TrainConfig
  objective: objectives.Objective  # window-level

  def init_state(self, params, seed):
    return optim.init_state(
      params, self.cfg, jax.random.fold_in(jax.random.key(seed), 1)
    )

  def order(self, seed, epoch, n):
    return engine.epoch_order(seed, epoch, n)

  def step(self, state, data, order_N, index, hyper):
    """One optimizer step on the batch of positions index*B .. index*B+B-1
    of order_N; returns (state, [mean data loss])."""
    words, casing, labels = data
    cfg, model_cfg = self.cfg, self.model_cfg
    B = cfg.batch_size
    idx = jax.lax.dynamic_slice_in_dim(order_N, index * B, B)
    words_BxK, casing_BxK, y_B = words[idx], casing[idx], labels[idx]
    params = state.params
    key, drop_key = state.key, None
    if model_cfg.dropout > 0:
      key, drop_key = jax.random.split(state.key)
    dense = {k: params[k] for k in optim.dense_keys(params, cfg) if k != 'L'}
    E_BxKxd = rows.take(params['L'], words_BxK)
    loss, g_dense, g_E = batch_grads(
      dense, E_BxKxd, casing_BxK, y_B, model_cfg, cfg, self.objective, drop_key
    )
    g_tables, row_grads = optim.table_grads(
      params, cfg, {'L': (words_BxK, E_BxKxd, g_E)}
    )
    g_dense.update(g_tables)
    state, loss = optim.apply_gradients(
      state, g_dense, hyper, cfg, key, row_grads, loss
    )
    return state, loss[None]

  def metric_names(self):
    return ('loss',)

  def batch_size(self):
    return self.cfg.batch_size

  def on_data_axis(self, devices):
    """The task on one of `devices` of a data axis: its share of the
    batch, and the axis's size (its steps combine across it)."""
    cfg = self.cfg._replace(
      batch_size=self.cfg.batch_size // devices, data_devices=devices
    )
    return self._replace(cfg=cfg)

  def keeps_per_step(self):
    return False

  def windows_per_step(self):
    return self.cfg.batch_size


def device_data(windows):
  """A vocab.Windows as the (words, casing, labels) device arrays of a task."""
  return tuple(
    jnp.asarray(a) for a in (windows.words, windows.casing, windows.labels)
  )


@functools.partial(jax.jit, static_argnames=('model_cfg', 'objective'))
def _predict_batch(params, words, casing, labels, model_cfg, objective):
  x = model_lib.window_vectors(params['L'], params['L_case'], words, casing)
  f = model_lib.class_scores(params, x, model_cfg)
  return jnp.argmax(f, axis=1), objective.loss(f, labels)


def predict(params, windows, model_cfg, objective, batch=8192):
  """Predicted tag ids [N] and per-window losses [N] (numpy) of a
  window-level `objective` (its research.formulas.objectives record)."""
  fn = functools.partial(
    _predict_batch, model_cfg=model_cfg, objective=objective
  )
  return engine.predict(
    fn, params, (windows.words, windows.casing, windows.labels), batch
  )


def weight_norm(params):
  """||theta|| over the weight matrices (not L, L_case or biases)."""
  keys = losses.regularized_keys(params)
  return float(jnp.sqrt(sum(jnp.sum(jnp.square(params[k])) for k in keys)))
