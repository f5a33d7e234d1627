"""The optimizer update every model shares: optax plus lazy word-vector rows.

`apply_gradients` takes one step from gradients: optax's direction (without
its -lr scaling; lr is traced, see `engine.Hyper`) for the dense parameters
(all but the lookup tables L and L_feat when sparse, and a frozen L) and, for
the lookup tables, the lazy row update of only the rows a batch touches and
of only their optimizer state. The row update exists in two forms with the
same results: what it means (`lazy_row_update_plain`, dense [V, d] masks)
and the packed form training uses (`lazy_row_update`).

The tasks hand over their data gradients only. This module is the one
place that adds the L2 term's gradient lambda * theta (`add_l2`), to the
parameters `losses.regularized_keys` names under the config's
l2_embeddings and l2_biases (`l2_keys`), and the one place that routes a
lookup table's gradient (`table_grads`): the gradients w.r.t. the rows a
batch gathered become either the lazy row update's (ids, rows, g) or a
dense [V, d] gradient for optax.

Lazy L2 on the row tables (a named approximation, "lazy weight decay").
With sparse updates and L2 on the word vectors (l2_embeddings), the row
update computes, for each row r the step touches,
g[r] = sum of the data gradients of r's occurrences + lambda * L[r]: the
L2 term once per step, however many times r occurs in the batch. Rows the
step does not touch get no decay at all. With sgd a touched row thus takes
exactly the dense step with L2 on it (L[r] -= lr g[r]), while an untouched
row keeps its value where the dense step would shrink it by
lr * lambda * L[r]; with adagrad or adam the same g[r] feeds the row's
lazily updated state. The exact penalty would cost O(V d) per step. The
dense path (sparse=False) applies L2 to every row (tests/test_l2.py shows
both).

A config passed here is any NamedTuple with the fields optimizer, sparse,
freeze_embeddings, l2_embeddings, l2_biases and packed_rows
(`classifier.TrainConfig`, `window_scorer.ScorerConfig`), and optionally
has_l2: False for a model without an L2 term (the window scorer), to which
nothing is added (not even 0 * theta, which would change how XLA compiles
its step, and so its last bits).
"""

import functools

import jax
import jax.numpy as jnp
import optax

from research.formulas import losses
from research.training import engine
from research.training import parallel
from research.training import rows

OPTIMIZERS = ('sgd', 'adagrad', 'adam')
ADAGRAD_INIT, ADAGRAD_EPS = 0.1, 1e-7  # optax.adagrad defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam defaults


def direction(name):
  """The optimizer without its -lr scaling (lr is applied by the step)."""
  return {
    'sgd': optax.identity(),
    'adagrad': optax.scale_by_rss(ADAGRAD_INIT, ADAGRAD_EPS),
    'adam': optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS),
  }[name]


ROW_TABLES = ('L', 'L_feat', 'L_char')  # tables updated row-wise when sparse


def row_tables(params, cfg):
  """The lookup tables a sparse config updates row by row: L (unless frozen),
  L_feat (research.data.features) and L_char (research.formulas.chars), those
  present."""
  if not cfg.sparse:
    return ()
  return tuple(
    k
    for k in ROW_TABLES
    if k in params and not (k == 'L' and cfg.freeze_embeddings)
  )


def dense_keys(params, cfg):
  """Parameters updated by optax: all but the row tables and a frozen L.

  `cfg` is any config with the fields optimizer, sparse, freeze_embeddings,
  l2_embeddings, l2_biases (`classifier.TrainConfig`,
  `window_scorer.ScorerConfig`).
  """
  skip = set(row_tables(params, cfg))
  if cfg.freeze_embeddings:
    skip.add('L')
  return tuple(k for k in params if k not in skip)


def l2_keys(params, cfg):
  """The parameters the optimizer adds lambda * theta to:
  `losses.regularized_keys` under cfg.l2_embeddings and cfg.l2_biases (the
  keys `losses.l2_penalty` sums over); none when cfg.has_l2 is False."""
  if not getattr(cfg, 'has_l2', True):
    return ()
  return losses.regularized_keys(params, cfg.l2_embeddings, cfg.l2_biases)


def add_l2(g, theta, lam):
  """The L2 term's gradient added to a data gradient: g + lambda * theta,
  d/dtheta of lambda/2 ||theta||^2 (`losses.l2_penalty`)."""
  return g + lam * theta


def add_l2_dense(g_dense, params, lam, cfg):
  """`add_l2` on every key of g_dense that L2 covers (`l2_keys`); the other
  gradients are returned unchanged."""
  covered = set(l2_keys(params, cfg))
  return {
    k: add_l2(g, params[k], lam) if k in covered else g
    for k, g in g_dense.items()
  }


def table_grads(params, cfg, gathered):
  """Routes the gradients of gathered lookup-table rows, sparse or dense.

  Args:
    params: the parameters.
    cfg: the training config.
    gathered: table name -> (ids, rows, g): the ids a batch looked up (any
      shape S), the rows it read, table[ids] (S + [d]), and the loss
      gradient w.r.t. them (S + [d]).

  Returns:
    (g_tables, row_grads). A table updated row by row (`row_tables`) gets
    row_grads[name] = (ids_M, rows_Mxd, g_Mxd), flattened, for the lazy row
    update; a table optax updates (`dense_keys`) gets g_tables[name], its
    [V, d] gradient: g scatter-added into zeros (a repeated id gets the sum
    of its occurrences); a frozen table gets neither (its g is not read).
  """
  tables = row_tables(params, cfg)
  dense = dense_keys(params, cfg)
  g_tables, row_grads = {}, {}
  for name, (ids, rows_Sxd, g_Sxd) in gathered.items():
    d = params[name].shape[1]
    if name in tables:
      row_grads[name] = (
        ids.reshape(-1),
        rows_Sxd.reshape(-1, d),
        g_Sxd.reshape(-1, d),
      )
    elif name in dense:
      g_tables[name] = jnp.zeros_like(params[name]).at[ids].add(g_Sxd)
  return g_tables, row_grads


def _rows_decay(table, cfg):
  """Whether the row update adds lambda * row to `table`'s rows (`l2_keys`:
  with l2_embeddings, since the row tables are word and feature vectors)."""
  return table in l2_keys({table: None}, cfg)


def init_state(params, cfg, key):
  """A fresh TrainState: optax state for the dense keys, and for each row
  table (`row_tables`) its row-wise state, rows_state[table]."""
  dense = {k: params[k] for k in dense_keys(params, cfg)}
  rows_state = {}
  for name in row_tables(params, cfg):
    if cfg.optimizer != 'sgd' or _rows_decay(name, cfg):
      V, d = params[name].shape
      table_state = {}
      if cfg.packed_rows:
        table_state['slot'] = jnp.zeros(V, jnp.int32)  # representatives
      if cfg.optimizer == 'adagrad':
        table_state['sum_sq'] = jnp.full((V, d), ADAGRAD_INIT, jnp.float32)
      elif cfg.optimizer == 'adam':
        # Both moments of a row side by side: one gather, one scatter.
        table_state['mu_nu'] = jnp.zeros((V, 2, d), jnp.float32)
      rows_state[name] = table_state
  return engine.TrainState(
    params,
    direction(cfg.optimizer).init(dense),
    rows_state,
    jnp.zeros((), jnp.int32),
    key,
    jnp.full((), -1, jnp.int32),
  )


def _row_delta(optimizer, g_Mxd, old, step):
  """The lazy optimizer's direction for some rows (lr not applied).

  old: those rows' optimizer state (`_state_key`): sums of squares [M, d]
  (adagrad), both moments [M, 2, d] (adam), None (sgd).
  Returns (delta_Mxd, the rows' new state).
  """
  if optimizer == 'sgd':
    return g_Mxd, None
  if optimizer == 'adagrad':
    s = old + jnp.square(g_Mxd)
    return g_Mxd * jax.lax.rsqrt(s + ADAGRAD_EPS), s
  # [g, g^2] along the middle axis, as one elementwise expression.
  g_Mx1xd = g_Mxd[:, None]
  first_moment = jnp.arange(2)[None, :, None] == 0
  powers_Mx2xd = g_Mx1xd * jnp.where(first_moment, 1.0, g_Mx1xd)
  beta = jnp.array([ADAM_B1, ADAM_B2])[None, :, None]
  mu_nu = beta * old + (1 - beta) * powers_Mx2xd
  t = (step + 1).astype(jnp.float32)
  delta = (mu_nu[:, 0] / (1 - ADAM_B1**t)) / (
    jnp.sqrt(mu_nu[:, 1] / (1 - ADAM_B2**t)) + ADAM_EPS
  )
  return delta, mu_nu


def _state_key(cfg):
  """The rows_state entry of the optimizer's per-row state (None for sgd)."""
  return {'adagrad': 'sum_sq', 'adam': 'mu_nu'}.get(cfg.optimizer)


def lazy_row_update_plain(
  L, rows_state, ids_M, g_Mxd, step, hyper, cfg, ok=True, table='L'
):
  """The lazy row optimizer, written as what it means (dense [V, d] masks).

  The gradient of each row of L is the sum over its occurrences in the
  batch, plus lambda * L[row] when L2 covers the table (`l2_keys`; lazy
  L2, see the module docstring: touched rows only, once per step). Only
  touched rows and their optimizer state change:
  sgd: L[r] -= lr g.  adagrad (row-wise): s[r] += g^2; L[r] -= lr g/sqrt(s[r]).
  adam (lazy): m[r], v[r] updated only when r is touched, bias correction by
  the global step. With sgd and no L2 on L this equals the dense update.

  Costs O(V d) per step; `lazy_row_update` computes the same on the touched
  rows only. Nothing changes unless the traced bool `ok` (the divergence
  guard of `apply_gradients`). `table`: the table's name (whether L2
  covers it).
  """
  V = L.shape[0]
  g_Vxd = jnp.zeros_like(L).at[ids_M].add(g_Mxd)
  touched_V = jnp.zeros(V, bool).at[ids_M].set(True)
  if _rows_decay(table, cfg):
    g_Vxd = add_l2(g_Vxd, L, hyper.l2)
  key = _state_key(cfg)
  old = rows_state.get(key)
  delta, new = _row_delta(cfg.optimizer, g_Vxd, old, step)
  if key is not None:
    mask = touched_V.reshape((V,) + (1,) * (old.ndim - 1)) & ok
    rows_state = dict(rows_state, **{key: jnp.where(mask, new, old)})
  return jnp.where(touched_V[:, None] & ok, L - hyper.lr * delta, L), rows_state


def representatives(slot_V, ids_M):
  """One position per distinct id of a batch, without sorting.

  Every position i is written into slot[ids[i]] (for a repeated id, one of
  its positions wins) and read back: rep[i] is the position that stands for
  ids[i], and i is its id's representative when rep[i] == i. Only the
  slots of this batch's ids are written before they are read, so the [V]
  table carries no meaning between steps and is never reset.

  Returns (slot_V, rep_M, first_M).
  """
  pos_M = jnp.arange(ids_M.shape[0], dtype=ids_M.dtype)
  slot_V = rows.put(slot_V, ids_M, pos_M)
  rep_M = rows.take(slot_V, ids_M)
  return slot_V, rep_M, rep_M == pos_M


def lazy_row_update(
  L, rows_state, ids_M, rows_Mxd, g_Mxd, step, hyper, cfg, ok=True, table='L'
):
  """`lazy_row_update_plain` on the touched rows only (the packed form).

  rows_Mxd = L[ids_M] (the gathered word vectors of the forward pass, reused).
  Each id's representative (`representatives`) adds the other occurrences
  of its id to its own gradient; only representatives write their row, so
  the written ids are distinct. Same results as the plain form (tests).
  Measured gain (`./launch.sh bench`, CoNLL-2003's 22k-word vocabulary,
  Adam, batch 256, 2-core CPU): the whole training step runs 1.9x as many
  windows/s as with the plain form (189k vs 99k).

  Returns (L, rows_state); nothing changes unless the traced bool `ok`
  (the divergence guard of `apply_gradients`), but the slot table, which
  carries no meaning between steps. `table`: the table's name (whether L2
  covers it).
  """
  M = ids_M.shape[0]
  decay = _rows_decay(table, cfg)
  if cfg.optimizer == 'sgd' and not decay:
    # Summing repeats and updating once equals updating once per repeat.
    step_Mxd = jnp.where(ok, -hyper.lr * g_Mxd, 0.0)
    return rows.add(L, ids_M, step_Mxd), rows_state
  slot, rep_M, first_M = representatives(rows_state['slot'], ids_M)
  g_Mxd = g_Mxd.at[jnp.where(first_M, M, rep_M)].add(g_Mxd, mode='drop')
  if decay:
    g_Mxd = add_l2(g_Mxd, rows_Mxd, hyper.l2)
  rows_state = dict(rows_state, slot=slot)
  key = _state_key(cfg)
  old = rows.take(rows_state[key], ids_M) if key else None
  delta, new = _row_delta(cfg.optimizer, g_Mxd, old, step)
  keep = first_M & ok
  if key is not None:
    rows_state[key] = rows.put_distinct(rows_state[key], ids_M, new, keep)
  return rows.put_distinct(L, ids_M, rows_Mxd - hyper.lr * delta, keep), (
    rows_state
  )


def all_finite(tree):
  """Whether every entry of a pytree's arrays is finite (a traced bool)."""
  checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


def apply_gradients(
  state, g_dense, hyper, cfg, key, row_grads=None, loss=0.0, weight=1.0
):
  """One optimizer step from gradients; returns (the next TrainState, the
  loss of the global batch).

  In a data-parallel step (research.training.parallel) the gradients and loss
  are this device's, means over its `weight` windows or words; they are first
  combined across the data axis (parallel.across_data), so that every device
  takes the same step.

  The divergence guard: the step is taken only when the loss is finite and
  below engine.MAX_LOSS, every gradient (dense, and of the rows the step
  writes) is finite, and the configuration has not diverged before; this
  is checked here, inside the compiled loop. Otherwise nothing changes but
  the step counter, and `diverged` records the step: the configuration
  keeps the parameters of its last good step. (Checking the gradients, not
  the new parameters, keeps the guard off the step's critical path: the
  parameters' finiteness would cost the default model a quarter of its
  speed, bench. A finite step that overflows the parameters makes the next
  step's loss non-finite, and the guard stops there.)

  The L2 term's gradient is added here (`add_l2_dense`, before the
  data-parallel combination, as each device's share) to the dense
  gradients, and in the row update to the rows (lazy L2, see the module
  docstring); the tasks give data gradients only.

  Args:
    state: TrainState.
    g_dense: the data gradients of the `dense_keys` parameters (no L2).
    hyper: Hyper (scalars).
    cfg: the model's training config (see `dense_keys`).
    key: the PRNG key the next state carries.
    row_grads: for each row table (`row_tables`), (ids_M, rows_Mxd, g_Mxd):
      the batch's row ids, their gathered rows and the loss gradient w.r.t.
      them.
    loss: the step's loss (checked for finiteness).
    weight: this device's share of the batch (data-parallel steps only).
  """
  params = state.params
  g_dense = add_l2_dense(g_dense, params, hyper.l2, cfg)
  g_dense, row_grads, loss = parallel.across_data(
    g_dense, row_grads or {}, loss, weight, cfg.data_devices
  )
  dense = {k: params[k] for k in dense_keys(params, cfg)}
  finite = jnp.all(jnp.isfinite(loss) & (loss < engine.MAX_LOSS))
  finite = finite & all_finite((g_dense, [g for _, _, g in row_grads.values()]))
  ok = finite & (state.diverged < 0)
  update = lazy_row_update if cfg.packed_rows else lazy_row_update_plain
  new_rows, rows_state = {}, dict(state.rows_state)
  for name, (ids_M, rows_Mxd, g_Mxd) in row_grads.items():
    args = (rows_Mxd,) if cfg.packed_rows else ()
    new_rows[name], table_state = update(
      params[name],
      rows_state.get(name, {}),
      ids_M,
      *args,
      g_Mxd,
      state.step,
      hyper,
      cfg,
      ok,
      name,
    )
    if name in rows_state:
      rows_state[name] = table_state
  updates, opt_state = direction(cfg.optimizer).update(
    g_dense, state.opt_state, dense
  )
  new = {k: dense[k] - hyper.lr * updates[k] for k in dense}
  keep = functools.partial(jax.tree.map, lambda a, b: jnp.where(ok, a, b))
  diverged = jnp.where(
    (state.diverged < 0) & ~finite, state.step, state.diverged
  )
  next_state = engine.TrainState(
    dict(params, **keep(new, dense), **new_rows),
    keep(opt_state, state.opt_state),
    rows_state,
    state.step + 1,
    key,
    diverged,
  )
  return next_state, loss
