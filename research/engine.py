"""The training engine: one state, one compiled loop, one `fit` for S configs.

Every model trains through `fit`, which always trains a stack of S
configurations (S = 1 for a single run): parameters, optimizer state and
hyperparameters carry a leading axis S, each configuration has its own seed,
and the data are shared. What differs between models is a *task*
(`research.classifier.ClassifierTask`, `research.window_scorer.ScorerTask`):
a hashable object with

  init_state(params, seed) -> TrainState
  order(seed, epoch, n)    -> [n] int32 host array (the epoch's data order)
  step(state, data, order_N, index, hyper) -> (state, metrics_M)
  metric_names()           -> the M per-step metrics (e.g. ('loss',))
  windows_per_step()       -> windows scored by one step (for windows/s)
  batch_size()             -> the batch size (for the default steps/epoch)
  keeps_per_step()         -> whether fit returns each step's metrics

The engine runs up to `steps_per_call` steps inside one compiled call
(`run_steps`, a `lax.fori_loop`), with the data on the device, and moves the
per-step metrics to the host once per call. Learning rate and L2 strength are
traced (`Hyper`), so one program serves a whole sweep; for S > 1 it is
`jax.vmap`-ed over the configurations, for S = 1 the stack axis is dropped
inside the compiled call so that a single run compiles the unbatched program.

The optimizer update is shared as well (`apply_gradients`): optax's direction
for the dense parameters (all but L when L is sparse or frozen) and, for the
word vectors, the lazy row update of only the rows a batch touches
(`lazy_row_update`).
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import rows
from research.errors import UserError

OPTIMIZERS = ('sgd', 'adagrad', 'adam')
ADAGRAD_INIT, ADAGRAD_EPS = 0.1, 1e-7  # optax.adagrad defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam defaults


class Hyper(NamedTuple):
  """Traced hyperparameters: [S] vectors in `fit`, scalars inside a step."""

  lr: Any
  l2: Any


class TrainState(NamedTuple):
  params: dict  # all parameters, L included
  opt_state: Any  # optax state of the dense (non-L) trainable parameters
  rows_state: dict  # row-wise optimizer state of L (sparse path only)
  step: jax.Array
  key: jax.Array


def direction(name):
  """The optimizer without its -lr scaling (lr is applied by the step)."""
  return {
    'sgd': optax.identity(),
    'adagrad': optax.scale_by_rss(ADAGRAD_INIT, ADAGRAD_EPS),
    'adam': optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS),
  }[name]


def dense_keys(params, cfg):
  """Parameters updated by optax: all but L when L is sparse or frozen.

  `cfg` is any config with the fields optimizer, sparse, freeze_embeddings,
  l2_embeddings (`classifier.TrainConfig`, `window_scorer.ScorerConfig`).
  """
  skip_l = cfg.sparse or cfg.freeze_embeddings
  return tuple(k for k in params if not (k == 'L' and skip_l))


def init_state(params, cfg, key):
  """A fresh TrainState: optax state for the dense keys, row state for L."""
  dense = {k: params[k] for k in dense_keys(params, cfg)}
  rows_state = {}
  if (
    cfg.sparse
    and not cfg.freeze_embeddings
    and (cfg.optimizer != 'sgd' or cfg.l2_embeddings)
  ):
    V, d = params['L'].shape
    if cfg.packed_rows:
      rows_state['slot'] = jnp.zeros(V, jnp.int32)  # representatives
    if cfg.optimizer == 'adagrad':
      rows_state['sum_sq'] = jnp.full((V, d), ADAGRAD_INIT, jnp.float32)
    elif cfg.optimizer == 'adam':
      # Both moments of a row side by side: one gather, one scatter.
      rows_state['mu_nu'] = jnp.zeros((V, 2, d), jnp.float32)
  return TrainState(
    params,
    direction(cfg.optimizer).init(dense),
    rows_state,
    jnp.zeros((), jnp.int32),
    key,
  )


def _row_delta(cfg, rows_state, g_Mxd, moments_Mx2xd, sum_sq_Mxd, step):
  """The lazy optimizer's direction for the touched rows (lr not applied).

  Returns (delta_Mxd, new moments or sums of squares of those rows).
  """
  if cfg.optimizer == 'sgd':
    return g_Mxd, None
  if cfg.optimizer == 'adagrad':
    s = sum_sq_Mxd + jnp.square(g_Mxd)
    return g_Mxd * jax.lax.rsqrt(s + ADAGRAD_EPS), s
  # [g, g^2] along the middle axis, as one elementwise expression.
  g_Mx1xd = g_Mxd[:, None]
  first_moment = jnp.arange(2)[None, :, None] == 0
  powers_Mx2xd = g_Mx1xd * jnp.where(first_moment, 1.0, g_Mx1xd)
  beta = jnp.array([ADAM_B1, ADAM_B2])[None, :, None]
  mu_nu = beta * moments_Mx2xd + (1 - beta) * powers_Mx2xd
  t = (step + 1).astype(jnp.float32)
  delta = (mu_nu[:, 0] / (1 - ADAM_B1**t)) / (
    jnp.sqrt(mu_nu[:, 1] / (1 - ADAM_B2**t)) + ADAM_EPS
  )
  return delta, mu_nu


def _state_key(cfg):
  return {'adagrad': 'sum_sq', 'adam': 'mu_nu'}.get(cfg.optimizer)


def lazy_row_update_plain(L, rows_state, ids_M, g_Mxd, step, hyper, cfg):
  """The lazy row optimizer, written as what it means (dense [V, d] masks).

  The gradient of each row of L is the sum over its occurrences in the
  batch, plus lambda * L[row] when L2 covers word vectors (weight decay
  applied lazily, to touched rows only). Only touched rows and their
  optimizer state change:
  sgd: L[r] -= lr g.  adagrad (row-wise): s[r] += g^2; L[r] -= lr g/sqrt(s[r]).
  adam (lazy): m[r], v[r] updated only when r is touched, bias correction by
  the global step. With sgd and no L2 on L this equals the dense update.

  Costs O(V d) per step; `lazy_row_update` computes the same on the touched
  rows only.
  """
  V = L.shape[0]
  g_Vxd = jnp.zeros_like(L).at[ids_M].add(g_Mxd)
  touched_V = jnp.zeros(V, bool).at[ids_M].set(True)
  if cfg.l2_embeddings:
    g_Vxd = g_Vxd + hyper.l2 * L
  key = _state_key(cfg)
  old = rows_state.get(key)
  delta, new = _row_delta(
    cfg,
    rows_state,
    g_Vxd,
    old if key == 'mu_nu' else None,
    old if key == 'sum_sq' else None,
    step,
  )
  if key is not None:
    mask = touched_V.reshape((V,) + (1,) * (old.ndim - 1))
    rows_state = dict(rows_state, **{key: jnp.where(mask, new, old)})
  L = jnp.where(touched_V[:, None], L - hyper.lr * delta, L)
  return L, rows_state


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


def lazy_row_update(L, rows_state, ids_M, rows_Mxd, g_Mxd, step, hyper, cfg):
  """`lazy_row_update_plain` on the touched rows only (the packed form).

  rows_Mxd = L[ids_M] (the gathered word vectors of the forward pass, reused).
  Each id's representative (`representatives`) adds the other occurrences
  of its id to its own gradient; only representatives write their row, so
  the written ids are distinct. Same results as the plain form (tests).
  Measured gain (`./launch.sh bench`, CoNLL-2003's 22k-word vocabulary,
  Adam, batch 256, 2-core CPU): the whole training step runs 1.9x as many
  windows/s as with the plain form (189k vs 99k).
  """
  M = ids_M.shape[0]
  if cfg.optimizer == 'sgd' and not cfg.l2_embeddings:
    # Summing repeats and updating once equals updating once per repeat.
    return rows.add(L, ids_M, -hyper.lr * g_Mxd), rows_state
  slot, rep_M, first_M = representatives(rows_state['slot'], ids_M)
  g_Mxd = g_Mxd.at[jnp.where(first_M, M, rep_M)].add(g_Mxd, mode='drop')
  if cfg.l2_embeddings:
    g_Mxd = g_Mxd + hyper.l2 * rows_Mxd
  rows_state = dict(rows_state, slot=slot)
  key = _state_key(cfg)
  old = rows.take(rows_state[key], ids_M) if key else None
  delta, new = _row_delta(
    cfg,
    rows_state,
    g_Mxd,
    old if key == 'mu_nu' else None,
    old if key == 'sum_sq' else None,
    step,
  )
  if key is not None:
    rows_state[key] = rows.put_distinct(rows_state[key], ids_M, new, first_M)
  L = rows.put_distinct(L, ids_M, rows_Mxd - hyper.lr * delta, first_M)
  return L, rows_state


def apply_gradients(state, g_dense, hyper, cfg, key, word_rows=None):
  """One optimizer step from gradients; returns the next TrainState.

  Args:
    state: TrainState.
    g_dense: gradients of the `dense_keys` parameters (L2 included).
    hyper: Hyper (scalars).
    cfg: the model's training config (see `dense_keys`).
    key: the PRNG key the next state carries.
    word_rows: for sparse L, (ids_M, rows_Mxd, g_Mxd): the batch's word ids,
      their gathered vectors and the loss gradient w.r.t. them.
  """
  params = state.params
  dense = {k: params[k] for k in dense_keys(params, cfg)}
  L, rows_state = params['L'], state.rows_state
  if word_rows is not None and not cfg.freeze_embeddings:
    ids_M, rows_Mxd, g_Mxd = word_rows
    if cfg.packed_rows:
      L, rows_state = lazy_row_update(
        L, rows_state, ids_M, rows_Mxd, g_Mxd, state.step, hyper, cfg
      )
    else:
      L, rows_state = lazy_row_update_plain(
        L, rows_state, ids_M, g_Mxd, state.step, hyper, cfg
      )
  updates, opt_state = direction(cfg.optimizer).update(
    g_dense, state.opt_state, dense
  )
  new = {k: dense[k] - hyper.lr * updates[k] for k in dense}
  new.setdefault('L', L)
  return TrainState(
    dict(params, **new), opt_state, rows_state, state.step + 1, key
  )


def run_steps(state, data, order_N, first, num_steps, hyper, task, max_steps):
  """Steps first .. first+num_steps-1 of an epoch in one compiled loop.

  num_steps (<= max_steps) is traced, so every chunk size shares one
  program. Returns (state, (sum_M, metrics_TxM)): the metrics summed over
  the steps and, when `task.keeps_per_step()`, each step's in the first
  num_steps rows of a [max_steps, M] array (else [0, M]: writing a row per
  step costs a vmapped sweep about 7% of its time).
  """
  keep = task.keeps_per_step()

  def body(i, carry):
    state, sum_M, metrics_TxM = carry
    state, m_M = task.step(state, data, order_N, first + i, hyper)
    if keep:
      metrics_TxM = jax.lax.dynamic_update_index_in_dim(metrics_TxM, m_M, i, 0)
    return state, sum_M + m_M, metrics_TxM

  M = len(task.metric_names())
  init = (
    state,
    jnp.zeros(M, jnp.float32),
    jnp.zeros((max_steps if keep else 0, M), jnp.float32),
  )
  state, sum_M, metrics_TxM = jax.lax.fori_loop(0, num_steps, body, init)
  return state, (sum_M, metrics_TxM)


def _run_stack(
  state, data, order_SxN, first, num_steps, hyper, task, max_steps
):
  """`run_steps` for the S stacked configurations (vmapped when S > 1)."""
  run = functools.partial(run_steps, task=task, max_steps=max_steps)
  if order_SxN.shape[0] == 1:
    squeeze = functools.partial(jax.tree.map, lambda a: a[0])
    state, metrics = run(
      squeeze(state), data, order_SxN[0], first, num_steps, squeeze(hyper)
    )
    return jax.tree.map(lambda a: a[None], (state, metrics))
  return jax.vmap(run, in_axes=(0, None, 0, None, None, 0))(
    state, data, order_SxN, first, num_steps, hyper
  )


# XLA:CPU hands float32 matrix products to YNNPACK by default; its own
# (Eigen) kernels run these models' products faster: experiments/bench.py
# times the training step both ways in every run. Only the CPU gets it.
CPU_COMPILER_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)


def default_compiler_options():
  """The training program's XLA options on the default backend."""
  return CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else ()


@functools.cache
def program(compiler_options=None):
  """The jitted training loop over a stack of configurations.

  compiler_options: XLA options as ((name, value), ...); None picks
  CPU_COMPILER_OPTIONS on the CPU and nothing elsewhere, () nothing.
  """
  if compiler_options is None:
    compiler_options = default_compiler_options()
  return jax.jit(
    _run_stack,
    static_argnames=('task', 'max_steps'),
    donate_argnames=('state',),
    compiler_options=dict(compiler_options) or None,
  )


def stack(trees):
  """Stacks a list of S pytrees along a new leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def unstack(tree, i):
  """The i-th configuration of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


def fit(
  task,
  params,
  hyper,
  seeds,
  data,
  *,
  num_examples,
  epochs,
  steps_per_epoch=None,
  evaluate=None,
  eval_every=0,
  eval_at_start=False,
  on_eval=None,
  steps_per_call=500,
  compiler_options=None,
  log=print,
  name='',
):
  """Trains S configurations of one task together.

  Args:
    task: a task (see the module docstring); hashable, static.
    params: initial parameters stacked along a leading axis S.
    hyper: Hyper(lr, l2), each of shape [S].
    seeds: S ints, one per configuration (order, dropout, sampling).
    data: the task's training data (device arrays), shared by all S.
    num_examples: n, the length of the task's epoch order.
    epochs: passes of `steps_per_epoch` steps.
    steps_per_epoch: default n // task.windows_per_step batch; a pass's last
      partial batch is left out.
    evaluate: optional fn(stacked params) -> dict, called every
      `eval_every` steps (0: at the end of each epoch), at the end, and at
      step 0 when `eval_at_start`.
    on_eval: optional fn(row) called with each history row as it is made.
    steps_per_call: most steps per compiled call (progress granularity).
    compiler_options: XLA options of the training program (see `program`).
    log: progress line printer.
    name: a label for the progress lines.

  Returns:
    (params, history, stats): stacked final parameters; history is the list
    of evaluate() results, each with 'step', 'epoch' and 'train_<metric>'
    (the mean per configuration since the previous row, [S] lists; None at
    step 0) added; stats has 'train_windows_per_sec' (windows of all S
    configurations per second of stepping: compilation and evaluation
    excluded), 'train_seconds', 'compile_seconds', 'steps', and, when the
    task keeps them, 'per_step' ({metric: [S, steps] array}).
  """
  seeds = [int(s) for s in seeds]
  S = len(seeds)
  B = task.batch_size()
  spe = steps_per_epoch or num_examples // B
  if spe == 0:
    raise UserError(
      f'batch size {B} is larger than the {num_examples:,} '
      'training windows; pass a smaller --batch_size'
    )
  total_steps = spe * epochs
  eval_every = eval_every or spe
  names = task.metric_names()
  per_window = task.windows_per_step()
  hyper = Hyper(
    jnp.asarray(hyper.lr, jnp.float32).reshape(S),
    jnp.asarray(hyper.l2, jnp.float32).reshape(S),
  )
  params = jax.tree.map(jnp.array, params)  # a copy: the state is donated
  state = jax.vmap(task.init_state)(params, jnp.asarray(seeds, jnp.uint32))

  def orders(epoch):
    return jnp.asarray(
      np.stack([task.order(s, epoch, num_examples) for s in seeds])
    )

  max_steps = max(1, min(steps_per_call, total_steps))
  # A call of zero steps compiles (or finds in jit's cache) the program. It
  # is called exactly as the loop below calls it: jit keys its cache on how
  # arguments are passed, so a positional task here and a keyword one there
  # would compile twice (the second time inside the timed steps).
  step_fn = functools.partial(
    program(compiler_options), task=task, max_steps=max_steps
  )
  t0 = time.perf_counter()
  state, _ = step_fn(state, data, orders(0), 0, 0, hyper)
  jax.block_until_ready(state)
  compile_seconds = time.perf_counter() - t0

  history, chunks, train_seconds, step = [], [], 0.0, 0
  sum_SxM, steps_since = np.zeros((S, len(names))), 0

  def record():
    row = {'step': step, 'epoch': step / spe}
    for j, metric in enumerate(names):
      row[f'train_{metric}'] = (
        (sum_SxM[:, j] / steps_since).tolist() if steps_since else None
      )
    row.update(evaluate(state.params))
    history.append(row)
    if on_eval is not None:
      on_eval(row)

  if evaluate is not None and eval_at_start:
    record()
  for epoch in range(epochs):
    order = orders(epoch)
    first = 0
    while first < spe:
      num = min(max_steps, spe - first, eval_every - step % eval_every)
      t = time.perf_counter()
      state, (chunk_SxM, per_step_SxTxM) = step_fn(
        state, data, order, first, num, hyper
      )
      chunk_SxM = np.asarray(chunk_SxM)  # waits for the device
      train_seconds += time.perf_counter() - t
      if task.keeps_per_step():
        chunks.append(np.asarray(per_step_SxTxM)[:, :num])
      sum_SxM, steps_since = sum_SxM + chunk_SxM, steps_since + num
      first, step = first + num, step + num
      wps = step * per_window * S / train_seconds
      eta = (total_steps - step) * per_window * S / wps
      shown = ' '.join(
        f'{m} {chunk_SxM[:, j].mean() / num:.4f}' for j, m in enumerate(names)
      )
      log(
        f'{name}epoch {epoch + 1}/{epochs} step {step}/{total_steps} '
        f'{shown} {wps:,.0f} windows/s ETA {eta:.0f}s'
      )
      if step % eval_every == 0 or step == total_steps:
        if evaluate is not None:
          record()
        sum_SxM, steps_since = np.zeros((S, len(names))), 0
  all_SxTxM = (
    np.concatenate(chunks, axis=1)
    if chunks
    else np.zeros((S, 0, len(names)), np.float32)
  )
  stats = {
    'train_windows_per_sec': step * per_window * S / max(train_seconds, 1e-9),
    'train_seconds': train_seconds,
    'compile_seconds': compile_seconds,
    'steps': step,
  }
  if task.keeps_per_step():
    stats['per_step'] = {m: all_SxTxM[:, :, j] for j, m in enumerate(names)}
  return state.params, history, stats


def predict(fn, params, arrays, batch=8192):
  """fn(params, *arrays[i:i+batch]) over fixed-size batches, as numpy.

  `fn` is jitted and returns an array or a tuple of arrays with a leading
  axis of the batch; the last batch is padded (one compiled shape) unless
  all the data fit in one. Returns the outputs concatenated.
  """
  n = len(arrays[0])
  outs = []
  for start in range(0, n, batch):
    part = [np.asarray(a[start : start + batch]) for a in arrays]
    pad = batch - len(part[0]) if n > batch else 0
    if pad:
      part = [np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in part]
    out = fn(params, *part)
    single = not isinstance(out, tuple)
    out = (out,) if single else out
    outs.append([np.asarray(o)[: len(o) - pad] for o in out])
  if not outs:
    raise ValueError('predict: no data')
  joined = tuple(np.concatenate(parts) for parts in zip(*outs))
  return joined[0] if single else joined


def epoch_order(seed, epoch, n):
  """The order of the n training windows in an epoch: a permutation [n].

  Drawn on the host: jax.random.permutation sorts n keys on the device,
  about 0.1 s per CoNLL epoch on a CPU, which would count as training time.
  """
  rng = np.random.default_rng((int(seed) % 2**32, epoch))
  return rng.permutation(n).astype(np.int32)
