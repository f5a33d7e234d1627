"""Training: the objective, a jitted step, many steps per compiled call.

Gradients are taken with respect to the dense parameters and the *gathered*
word vectors E = L[words] ([B, K, d]), never the whole table. The word-vector
gradient then reaches L in one of two ways:

* sparse (default): scatter-add into the touched rows only, and update only
  those rows' optimizer state (row-wise "lazy" semantics, see `_row_update`);
* dense: scatter into a zero [V, d] gradient and let optax update every row
  (what autodiff through the gather does; the baseline the sparse path is
  measured against, identical to it for plain SGD without L2 on L).

Learning rate and L2 strength are traced arrays (`Hyper`), not constants, so
one compiled program serves a whole sweep and can be `jax.vmap`-ed over it.
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import losses
from research import model as model_lib
from research import rows
from research.errors import UserError

OPTIMIZERS = ('sgd', 'adagrad', 'adam')
ADAGRAD_INIT, ADAGRAD_EPS = 0.1, 1e-7  # optax.adagrad defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam defaults


class TrainConfig(NamedTuple):
  """Static choices of a training run (hashable: part of the jit cache key)."""
  objective: str = 'xent'  # a key of losses.OBJECTIVES
  optimizer: str = 'adam'  # one of OPTIMIZERS
  batch_size: int = 256
  l2_embeddings: bool = False  # L2 covers L and L_case
  l2_biases: bool = False  # L2 covers b and c
  freeze_embeddings: bool = False  # L is never updated
  sparse: bool = True  # row-wise updates of L (see module docstring)
  grad: str = 'autodiff'  # or 'manual': the hand-derived backprop


class Hyper(NamedTuple):
  """Traced hyperparameters (scalars, or [S] vectors under vmap)."""
  lr: Any
  l2: Any


class TrainState(NamedTuple):
  params: dict  # all parameters, L included
  opt_state: Any  # optax state of the dense (non-L) trainable parameters
  rows_state: dict  # row-wise optimizer state of L (sparse path only)
  step: jax.Array
  key: jax.Array


def _direction(name):
  """The optimizer without its -lr scaling (lr is applied by the step)."""
  return {
      'sgd': optax.identity(),
      'adagrad': optax.scale_by_rss(ADAGRAD_INIT, ADAGRAD_EPS),
      'adam': optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS),
  }[name]


def _dense_keys(params, cfg):
  """Parameters updated by optax: all but L when L is sparse or frozen."""
  skip_l = cfg.sparse or cfg.freeze_embeddings
  return tuple(k for k in params if not (k == 'L' and skip_l))


def init_state(params, cfg, key):
  dense = {k: params[k] for k in _dense_keys(params, cfg)}
  rows_state = {}
  if cfg.sparse and not cfg.freeze_embeddings and (
      cfg.optimizer != 'sgd' or cfg.l2_embeddings):
    shape = params['L'].shape
    rows_state = {'slot': jnp.zeros(shape[0], jnp.int32)}  # _representatives
    if cfg.optimizer == 'adagrad':
      rows_state['sum_sq'] = jnp.full(shape, ADAGRAD_INIT, jnp.float32)
    elif cfg.optimizer == 'adam':
      # Both moments of a row side by side: one gather, one scatter.
      rows_state['mu_nu'] = jnp.zeros((shape[0], 2, shape[1]), jnp.float32)
  return TrainState(params, _direction(cfg.optimizer).init(dense), rows_state,
                    jnp.zeros((), jnp.int32), key)


def window_losses(params, E_NxKxd, casing_NxK, y_N, model_cfg, objective,
                  key=None):
  """Per-window objective from gathered word vectors E (L is not read)."""
  x_NxD = model_lib.concat_window(E_NxKxd, params['L_case'][casing_NxK])
  f_NxC = model_lib.class_scores(params, x_NxD, model_cfg, key)
  return losses.OBJECTIVES[objective](f_NxC, y_N)


def objective(params, words_NxK, casing_NxK, y_N, l2, model_cfg, cfg,
              key=None):
  """The full training objective: mean window loss + lambda/2 ||theta||^2."""
  data = window_losses(params, params['L'][words_NxK], casing_NxK, y_N,
                       model_cfg, cfg.objective, key).mean()
  return data + losses.l2_penalty(params, l2, cfg.l2_embeddings,
                                  cfg.l2_biases)


def batch_grads(dense, E, casing, y, l2, model_cfg, cfg, key):
  """(mean data loss, grads w.r.t. dense params (with L2), grad w.r.t. E)."""
  if cfg.grad == 'manual':
    from research import manual_grads  # pylint: disable=g-import-not-at-top
    loss, g_dense, g_E = manual_grads.batch_grads(
        dense, E, casing, y, model_cfg, cfg.objective)
  else:
    def data_loss(dense, E):
      return window_losses(dense, E, casing, y, model_cfg, cfg.objective,
                           key).mean()
    argnums = (0,) if cfg.freeze_embeddings else (0, 1)
    loss, grads = jax.value_and_grad(data_loss, argnums)(dense, E)
    g_dense, g_E = grads[0], (grads[1] if len(grads) > 1 else None)
  reg = set(losses.regularized_keys(dense, cfg.l2_embeddings, cfg.l2_biases))
  g_dense = {k: g + l2 * dense[k] if k in reg else g
             for k, g in g_dense.items()}
  return loss, g_dense, g_E


def _representatives(slot_V, ids_M):
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


def _row_update(L, rows_state, ids_M, rows_Mxd, g_Mxd, step, hyper, cfg):
  """Updates only the rows of L in ids_M (repeats accumulate).

  rows_Mxd = L[ids_M] (the gathered word vectors of the forward pass).
  Semantics (documented in the README): the gradient of each touched row is
  the sum over its occurrences in the batch, plus lambda * L[row] when L2
  covers word vectors (weight decay applied lazily, to touched rows only).
  sgd: L[r] -= lr g.  adagrad (row-wise): s[r] += g^2; L[r] -= lr g/sqrt(s[r]).
  adam (lazy): m[r], v[r] updated only when r is touched, bias correction by
  the global step. With sgd and no L2 on L this equals the dense update.
  """
  M = ids_M.shape[0]
  if cfg.optimizer == 'sgd' and not cfg.l2_embeddings:
    # Summing repeats and updating once equals updating once per repeat.
    return rows.add(L, ids_M, -hyper.lr * g_Mxd), rows_state
  slot, rep_M, first_M = _representatives(rows_state['slot'], ids_M)
  # Each representative adds the other occurrences of its id to its own
  # gradient; the other positions keep theirs and are not written back
  # (only representatives write their row, so the written ids are distinct).
  g_Mxd = g_Mxd.at[jnp.where(first_M, M, rep_M)].add(g_Mxd, mode='drop')
  if cfg.l2_embeddings:
    g_Mxd = g_Mxd + hyper.l2 * rows_Mxd
  rows_state = dict(rows_state, slot=slot)
  if cfg.optimizer == 'sgd':
    delta = g_Mxd
  elif cfg.optimizer == 'adagrad':
    s = rows.take(rows_state['sum_sq'], ids_M) + jnp.square(g_Mxd)
    rows_state['sum_sq'] = rows.put_distinct(rows_state['sum_sq'], ids_M, s,
                                             first_M)
    delta = g_Mxd * jax.lax.rsqrt(s + ADAGRAD_EPS)
  else:
    # [g, g^2] along the middle axis, as one elementwise expression.
    g_Mx1xd = g_Mxd[:, None]
    first_moment = jnp.arange(2)[None, :, None] == 0
    powers_Mx2xd = g_Mx1xd * jnp.where(first_moment, 1.0, g_Mx1xd)
    beta = jnp.array([ADAM_B1, ADAM_B2])[None, :, None]
    mu_nu = (beta * rows.take(rows_state['mu_nu'], ids_M) +
             (1 - beta) * powers_Mx2xd)
    rows_state['mu_nu'] = rows.put_distinct(rows_state['mu_nu'], ids_M, mu_nu,
                                            first_M)
    t = (step + 1).astype(jnp.float32)
    delta = (mu_nu[:, 0] / (1 - ADAM_B1**t)) / (
        jnp.sqrt(mu_nu[:, 1] / (1 - ADAM_B2**t)) + ADAM_EPS)
  L = rows.put_distinct(L, ids_M, rows_Mxd - hyper.lr * delta, first_M)
  return L, rows_state


def train_step(state, batch, hyper, model_cfg, cfg):
  """One optimizer step on one batch; returns (state, mean data loss)."""
  words_BxK, casing_BxK, y_B = batch
  params = state.params
  key, drop_key = state.key, None
  if model_cfg.dropout > 0:
    key, drop_key = jax.random.split(state.key)
  dense = {k: params[k] for k in _dense_keys(params, cfg)}
  dense.pop('L', None)
  E_BxKxd = rows.take(params['L'], words_BxK)
  loss, g_dense, g_E = batch_grads(dense, E_BxKxd, casing_BxK, y_B, hyper.l2,
                                   model_cfg, cfg, drop_key)
  L, rows_state = params['L'], state.rows_state
  if not cfg.freeze_embeddings:
    if cfg.sparse:
      d = L.shape[1]
      L, rows_state = _row_update(L, rows_state, words_BxK.reshape(-1),
                                  E_BxKxd.reshape(-1, d), g_E.reshape(-1, d),
                                  state.step, hyper, cfg)
    else:
      g_L = jnp.zeros_like(L).at[words_BxK].add(g_E)
      if cfg.l2_embeddings:
        g_L = g_L + hyper.l2 * L
      dense['L'], g_dense['L'] = L, g_L
  updates, opt_state = _direction(cfg.optimizer).update(
      g_dense, state.opt_state, dense)
  new = {k: dense[k] - hyper.lr * updates[k] for k in dense}
  new.setdefault('L', L)
  params = dict(params, **new)
  return TrainState(params, opt_state, rows_state, state.step + 1, key), loss


def _train_steps(state, data, perm, first, num_steps, hyper, model_cfg, cfg):
  """Runs `num_steps` steps on batches perm[(first+i)*B : (first+i+1)*B].

  The data stay on the device and the loop runs inside one compiled call
  (num_steps is traced, so every chunk size shares one program).
  Returns (state, summed data loss).
  """
  words, casing, labels = data
  B = cfg.batch_size

  def body(i, carry):
    state, total = carry
    idx = jax.lax.dynamic_slice_in_dim(perm, (first + i) * B, B)
    state, loss = train_step(state, (words[idx], casing[idx], labels[idx]),
                             hyper, model_cfg, cfg)
    return state, total + loss

  return jax.lax.fori_loop(0, num_steps, body, (state, jnp.float32(0.0)))


def _train_steps_many(state, data, perm_SxN, first, num_steps, hyper,
                      model_cfg, cfg):
  """`_train_steps` for S configurations at once, as one vmapped program.

  state and hyper carry a leading axis S (e.g. L2 strengths x seeds); each
  configuration has its own shuffle perm_SxN[s]; the data are shared.
  """
  run = functools.partial(_train_steps, model_cfg=model_cfg, cfg=cfg)
  return jax.vmap(run, in_axes=(0, None, 0, None, None, 0))(
      state, data, perm_SxN, first, num_steps, hyper)


# XLA:CPU hands float32 matrix products to YNNPACK by default; its own
# (Eigen) kernels run this model's products faster: experiments/bench.py
# times the training step both ways in every run. Only the CPU gets it.
CPU_COMPILER_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)


def default_compiler_options():
  """The training program's XLA options on the default backend."""
  return CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else ()


@functools.cache
def program(many=False, compiler_options=None):
  """The jitted training loop: one configuration, or S vmapped (`many`).

  compiler_options: XLA options as ((name, value), ...); None picks
  CPU_COMPILER_OPTIONS on the CPU and nothing elsewhere, () nothing.
  """
  if compiler_options is None:
    compiler_options = default_compiler_options()
  return jax.jit(_train_steps_many if many else _train_steps,
                 static_argnames=('model_cfg', 'cfg'),
                 donate_argnames=('state',),
                 compiler_options=dict(compiler_options) or None)


@functools.partial(jax.jit, static_argnames=('model_cfg', 'objective'))
def _predict_batch(params, words, casing, labels, model_cfg, objective):
  x = model_lib.window_vectors(params['L'], params['L_case'], words, casing)
  f = model_lib.class_scores(params, x, model_cfg)
  return jnp.argmax(f, axis=1), losses.OBJECTIVES[objective](f, labels)


def predict(params, windows, model_cfg, objective='xent', batch=8192):
  """Predicted tag ids [N] and per-window losses [N] (fixed-size batches)."""
  n = len(windows.labels)
  preds, window_loss = [], []
  for start in range(0, n, batch):
    sl = slice(start, start + batch)
    w, c, y = windows.words[sl], windows.casing[sl], windows.labels[sl]
    pad = batch - len(y) if n > batch else 0
    if pad:
      w, c = np.pad(w, ((0, pad), (0, 0))), np.pad(c, ((0, pad), (0, 0)))
      y = np.pad(y, (0, pad))
    p, l = _predict_batch(params, w, c, y, model_cfg, objective)
    preds.append(np.asarray(p)[:len(p) - pad])
    window_loss.append(np.asarray(l)[:len(l) - pad])
  return np.concatenate(preds), np.concatenate(window_loss)


def weight_norm(params):
  """||theta|| over the weight matrices (not L, L_case or biases)."""
  keys = losses.regularized_keys(params)
  return float(jnp.sqrt(sum(jnp.sum(jnp.square(params[k])) for k in keys)))


def epoch_order(seed, epoch, n):
  """The order of the n training windows in an epoch: a permutation [n].

  Drawn on the host: jax.random.permutation sorts n keys on the device,
  about 0.1 s per CoNLL epoch on a CPU, which would count as training time.
  """
  rng = np.random.default_rng((int(seed) % 2**32, epoch))
  return rng.permutation(n).astype(np.int32)


def fit(params, train, hyper, model_cfg, cfg, *, epochs, seed=0,
        evaluate=None, eval_every=0, on_eval=None, steps_per_call=500,
        compiler_options=None, log=print):
  """Trains on `train` (a vocab.Windows) for `epochs` epochs.

  With scalar `hyper` and one `seed` this trains one model. With `hyper.lr`
  and `hyper.l2` of shape [S], `seed` a length-S sequence and `params`
  stacked along a leading axis S, it trains the S configurations together as
  one vmapped program (`program(many=True)`); `evaluate` then receives the
  stacked parameters too.

  Args:
    params: initial parameters (leading axis S when training several).
    train: training windows.
    hyper: Hyper(lr, l2), scalars or [S] arrays.
    model_cfg, cfg: ModelConfig, TrainConfig.
    epochs: passes over the (reshuffled) training windows; the last partial
      batch of each pass is left out.
    seed: shuffling and dropout seed (a sequence of S seeds when stacked).
    evaluate: optional fn(params) -> dict, called every `eval_every` steps
      (0: at the end of each epoch) and at the end.
    eval_every: see `evaluate`.
    on_eval: optional fn(row) called with each history row as it is made.
    steps_per_call: most steps per compiled call (progress granularity).
    compiler_options: XLA options of the training program (see `program`).
    log: progress line printer.

  Returns:
    (params, history, stats): history is the list of evaluate() results, each
    with 'step', 'epoch' and 'train_loss' added ([S] lists when stacked);
    stats has 'train_windows_per_sec' (windows of all S configurations per
    second of stepping: compilation and evaluation excluded),
    'train_seconds', 'compile_seconds', 'steps'.
  """
  n, B = len(train.labels), cfg.batch_size
  spe = n // B
  if spe == 0:
    raise UserError(f'batch size {B} is larger than the {n:,} training '
                    'windows; pass a smaller --batch_size')
  many = np.ndim(hyper.lr) > 0
  seeds = list(seed) if many else [seed]
  S = len(seeds)
  total_steps = spe * epochs
  eval_every = eval_every or spe
  data = tuple(jnp.asarray(a) for a in (train.words, train.casing,
                                        train.labels))
  keys = [jax.random.key(s) for s in seeds]
  params = jax.tree.map(jnp.array, params)  # a copy: the state is donated

  def perms(epoch):
    out = np.stack([epoch_order(s, epoch, n) for s in seeds])
    return jnp.asarray(out if many else out[0])

  if many:
    hyper = Hyper(jnp.asarray(hyper.lr, jnp.float32),
                  jnp.asarray(hyper.l2, jnp.float32))
    state = jax.vmap(lambda p, k: init_state(p, cfg, k))(
        params, jnp.stack([jax.random.fold_in(k, 1) for k in keys]))
  else:
    hyper = Hyper(jnp.float32(hyper.lr), jnp.float32(hyper.l2))
    state = init_state(params, cfg, jax.random.fold_in(keys[0], 1))

  # A call of zero steps compiles (or finds in jit's cache) the program. It
  # is called exactly as the loop below calls it: jit keys its cache on how
  # arguments are passed, so a positional cfg here and a keyword one there
  # would compile twice (the second time inside the timed steps).
  step_fn = functools.partial(program(many, compiler_options),
                              model_cfg=model_cfg, cfg=cfg)
  t0 = time.perf_counter()
  state, _ = step_fn(state, data, perms(0), 0, 0, hyper)
  jax.block_until_ready(state)
  compile_seconds = time.perf_counter() - t0

  history, train_seconds, step = [], 0.0, 0
  loss_sum, loss_steps = np.zeros(S), 0
  for epoch in range(epochs):
    perm = perms(epoch)
    first = 0
    while first < spe:
      until_eval = eval_every - step % eval_every
      num = min(steps_per_call, spe - first, until_eval)
      t = time.perf_counter()
      state, loss = step_fn(state, data, perm, first, num, hyper)
      loss = np.asarray(loss).reshape(S)  # waits for the device
      train_seconds += time.perf_counter() - t
      first, step = first + num, step + num
      loss_sum, loss_steps = loss_sum + loss, loss_steps + num
      wps = step * B * S / train_seconds
      eta = (total_steps - step) * B * S / wps
      log(f'epoch {epoch + 1}/{epochs} step {step}/{total_steps} '
          f'loss {np.mean(loss) / num:.4f} {wps:,.0f} windows/s '
          f'ETA {eta:.0f}s')
      if step % eval_every == 0 or step == total_steps:
        if evaluate is not None:
          mean_loss = loss_sum / max(1, loss_steps)
          row = {'step': step, 'epoch': step / spe,
                 'train_loss': mean_loss.tolist() if many else
                               float(mean_loss[0])}
          row.update(evaluate(state.params))
          history.append(row)
          if on_eval is not None:
            on_eval(row)
        loss_sum, loss_steps = np.zeros(S), 0
  stats = {
      'train_windows_per_sec': step * B * S / max(train_seconds, 1e-9),
      'train_seconds': train_seconds,
      'compile_seconds': compile_seconds,
      'steps': step,
  }
  return state.params, history, stats


def unstack(tree, i):
  """The i-th configuration of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)
