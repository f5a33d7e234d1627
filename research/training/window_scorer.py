"""The deck's window scorer trained with the window max-margin, and its
logistic twin: binary detection of one entity type at the window center.

Both models are the scorer of `model.py`, s = U . g(W x + b), one scalar per
window; only the objective differs
(research.formulas.objectives.SCORER_REGISTRY, the scorer's own table: these
objectives take scalar scores, not class scores, and never pass for a
classifier's):

* margin (the deck's): J = sum_m max(0, 1 - s + s_c,m) over M corrupt windows
  per TRUE window. The true windows are the positive ones (center word of type
  T); a corrupt window is a true window with its center word replaced by a word
  drawn uniformly from the vocabulary (`corrupt_windows`). With negatives
  'corrupt+real', M real negative windows (center not of type T, drawn
  uniformly from the training data) are added to the M corrupt ones.
* logistic: -log sigma(s) for positive windows, -log(1 - sigma(s)) for the
  others, on all windows.

Detection is `s > 0` for both (for the logistic model that is sigma(s) > 0.5).
The margin objective only constrains differences s - s_c, so nothing in it
pins the scores of real negative windows below 0.

Training runs through `research.training.engine` (`ScorerTask`); batches are
drawn with replacement from each configuration's PRNG key. Word vectors get
dense optax updates (small vocabularies). There is no L2 term
(`ScorerConfig.has_l2`: the optimizer adds nothing, `optim.l2_keys`)."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.data import vocab as vocab_lib
from research.errors import UserError
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import driver
from research.training import engine
from research.training import optim

NEGATIVES = ('corrupt', 'corrupt+real')
CORRUPT_CASINGS = ('word', 'keep')
OPTIMIZERS = optim.OPTIMIZERS
FIRST_WORD = 3  # ids 0, 1, 2 are <s>, </s>, <unk>: never sampled
LOWER = vocab_lib.CASINGS.index('lower')


class ScorerConfig(NamedTuple):
  """Static choices of a training run (hashable: part of the jit cache key)."""

  objective: str = 'margin'  # a name of objectives.SCORER_REGISTRY
  negatives: str = 'corrupt'  # one of NEGATIVES (margin only)
  num_corrupt: int = 5  # M
  corrupt_casing: str = 'word'  # one of CORRUPT_CASINGS
  nonlinearity: str = 'tanh'
  optimizer: str = 'adam'  # one of OPTIMIZERS
  batch_size: int = 256  # true windows per step
  freeze_embeddings: bool = False
  # How the engine updates L: densely through optax, no L2 (these fields
  # are fixed).
  sparse: bool = False
  packed_rows: bool = True
  l2_embeddings: bool = False
  l2_biases: bool = False
  has_l2: bool = False
  mesh: str = 'auto'  # the devices: 'auto' or 'Cx1' (parallel.resolve)
  data_devices: int = 1  # it samples its batches: never split


class TrainData(NamedTuple):
  """Training windows and what the samplers need, as device arrays."""

  words_NxK: jax.Array
  casing_NxK: jax.Array
  y_N: jax.Array  # float32, 1 where the center word is of type T
  positives_P: jax.Array  # int32 indices of the positive windows
  negatives_Q: jax.Array  # int32 indices of the other windows
  casing_of_word_V: jax.Array  # [V] casing id of a sampled center word


def entity_labels(labels_N, tags, entity_type):
  """1 where the tag's type is `entity_type` (any prefix: B-, I-, E-, S-).

  Args:
    labels_N: [N] tag ids.
    tags: the tag list (tag id = position).
    entity_type: T, e.g. 'LOC'.

  Returns:
    [N] bool.

  Raises:
    UserError: no tag has type T.
  """
  types = [t.partition('-')[2] if t != 'O' else '' for t in tags]
  if entity_type not in types:
    known = sorted(set(types) - {''})
    raise UserError(
      f'entity type {entity_type!r} is not in the tag set; '
      f'choose one of {", ".join(known)}'
    )
  is_type = np.array([t == entity_type for t in types])
  return is_type[np.asarray(labels_N)]


def casing_of_words(words_NxK, casing_NxK, vocab_size):
  """The most frequent casing id of each word as a window center, [V] int32.

  Words never seen as a center get 'lower' (the special ids keep 0).
  """
  k = words_NxK.shape[1] // 2
  counts = np.zeros((vocab_size, len(vocab_lib.CASINGS)), np.int64)
  np.add.at(counts, (words_NxK[:, k], casing_NxK[:, k]), 1)
  table = counts.argmax(axis=1).astype(np.int32)
  table[counts.sum(axis=1) == 0] = LOWER
  table[:FIRST_WORD] = 0
  return table


def corrupt_windows(
  key,
  words_NxK,
  casing_NxK,
  num_corrupt,
  vocab_size,
  casing_of_word_V=None,
  minval=FIRST_WORD,
):
  """M corrupt copies of each window: the center word replaced at random.

  Deck: "sample several corrupt windows per true one", a corrupt window
  being the true one with its center word replaced by a random word. The
  replacement is drawn uniformly from ids minval..vocab_size-1 (by default
  the vocabulary without the padding and <unk> tokens); a draw may repeat
  the true center word (then s_c = s). The center casing becomes
  `casing_of_word_V[new word]`, or stays as it was when that is None. All
  other columns are unchanged. The key is explicit, so a loss and its
  gradient are functions of fixed inputs.

  Args:
    key: a PRNG key; the same key gives the same corruptions.
    words_NxK, casing_NxK: [N, K] int32 windows (K = 2k+1, center column k).
    num_corrupt: M.
    vocab_size: V.
    casing_of_word_V: optional [V] casing id of each word.
    minval: the smallest id drawn.

  Returns:
    (words_NxMxK, casing_NxMxK).
  """
  N, K = words_NxK.shape
  center = K // 2
  ids_NxM = jax.random.randint(
    key, (N, num_corrupt), minval, vocab_size, dtype=words_NxK.dtype
  )
  words_NxMxK = jnp.broadcast_to(words_NxK[:, None, :], (N, num_corrupt, K))
  words_NxMxK = words_NxMxK.at[:, :, center].set(ids_NxM)
  casing_NxMxK = jnp.broadcast_to(casing_NxK[:, None, :], (N, num_corrupt, K))
  if casing_of_word_V is not None:
    casing_NxMxK = casing_NxMxK.at[:, :, center].set(casing_of_word_V[ids_NxM])
  return words_NxMxK, casing_NxMxK


def scores(params, words_NxK, casing_NxK, nonlinearity='tanh'):
  """s = U . g(W x + b) for each window, [N]."""
  x_NxD = model_lib.window_vectors(
    params['L'], params['L_case'], words_NxK, casing_NxK
  )
  return model_lib.window_score(params, x_NxD, nonlinearity)


def hinge_terms(s_N, s_corrupt_NxM, margin=1.0):
  """margin - s + s_c for each (true, corrupt) pair, [N, M]."""
  return margin - s_N[:, None] + s_corrupt_NxM


def active_fraction(s_N, s_corrupt_NxM, margin=1.0):
  """The fraction of hinges with margin - s + s_c > 0 (those with gradient)."""
  return jnp.mean(hinge_terms(s_N, s_corrupt_NxM, margin) > 0)


def margin_losses(
  params,
  words_BxK,
  casing_BxK,
  neg_words_BxMxK,
  neg_casing_BxMxK,
  nonlinearity='tanh',
):
  """The deck's per-window J and its hinges' active fraction.

  Returns:
    (J_B, active fraction over the B*M hinges).
  """
  B, M, K = neg_words_BxMxK.shape
  words = jnp.concatenate([words_BxK, neg_words_BxMxK.reshape(B * M, K)])
  casing = jnp.concatenate([casing_BxK, neg_casing_BxMxK.reshape(B * M, K)])
  s_all = scores(params, words, casing, nonlinearity)
  s_B, s_c_BxM = s_all[:B], s_all[B:].reshape(B, M)
  J_B = objectives.get_scorer('margin').loss(s_B, s_c_BxM)
  return J_B, active_fraction(s_B, s_c_BxM)


def windows_per_step(cfg):
  """Windows scored per step (corrupt and negative ones included)."""
  if cfg.objective == 'logistic':
    return cfg.batch_size
  per_true = 1 + cfg.num_corrupt * (2 if cfg.negatives == 'corrupt+real' else 1)
  return cfg.batch_size * per_true


def sample_batch(key, data, cfg):
  """Draws one training batch (with replacement) for `cfg.objective`."""
  B, M = cfg.batch_size, cfg.num_corrupt
  k_true, k_corrupt, k_real = jax.random.split(key, 3)
  if cfg.objective == 'logistic':
    idx_B = jax.random.randint(k_true, (B,), 0, data.y_N.shape[0])
    return data.words_NxK[idx_B], data.casing_NxK[idx_B], data.y_N[idx_B]
  pick_B = jax.random.randint(k_true, (B,), 0, data.positives_P.shape[0])
  idx_B = data.positives_P[pick_B]
  words_BxK, casing_BxK = data.words_NxK[idx_B], data.casing_NxK[idx_B]
  table = data.casing_of_word_V if cfg.corrupt_casing == 'word' else None
  neg_words, neg_casing = corrupt_windows(
    k_corrupt, words_BxK, casing_BxK, M, data.casing_of_word_V.shape[0], table
  )
  if cfg.negatives == 'corrupt+real':
    pick_BxM = jax.random.randint(k_real, (B, M), 0, data.negatives_Q.shape[0])
    idx_BxM = data.negatives_Q[pick_BxM]
    neg_words = jnp.concatenate([neg_words, data.words_NxK[idx_BxM]], axis=1)
    neg_casing = jnp.concatenate([neg_casing, data.casing_NxK[idx_BxM]], axis=1)
  return words_BxK, casing_BxK, neg_words, neg_casing


def batch_loss(params, batch, cfg):
  """(mean loss, active hinge fraction; NaN for the logistic objective)."""
  if cfg.objective == 'logistic':
    words_BxK, casing_BxK, y_B = batch
    s_B = scores(params, words_BxK, casing_BxK, cfg.nonlinearity)
    J_B = objectives.get_scorer('logistic').loss(s_B, y_B)
    return J_B.mean(), jnp.float32(jnp.nan)
  J_B, active = margin_losses(params, *batch, nonlinearity=cfg.nonlinearity)
  return J_B.mean(), active


def train_step(state, data, hyper, cfg):
  """One optimizer step; returns (state, (loss, active fraction))."""
  key, batch_key = jax.random.split(state.key)
  batch = sample_batch(batch_key, data, cfg)
  names = optim.dense_keys(state.params, cfg)
  trainable = {k: state.params[k] for k in names}
  frozen = {k: v for k, v in state.params.items() if k not in names}

  def loss_fn(trainable):
    return batch_loss({**trainable, **frozen}, batch, cfg)

  (loss, active), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
  state, _ = optim.apply_gradients(state, grads, hyper, cfg, key, loss=loss)
  return state, (loss, active)


class ScorerTask(NamedTuple):
  """The window scorer for `engine.Loop`: data = TrainData; each step draws
  its batch from the configuration's key (no epoch order)."""

  cfg: ScorerConfig

  def init_state(self, params, seed):
    return optim.init_state(params, self.cfg, jax.random.key(seed))

  def order(self, seed, epoch, n):
    del seed, epoch, n  # batches are sampled, not visited in order
    return np.zeros(1, np.int32)

  def step(self, state, data, order_N, index, hyper):
    del order_N, index
    state, (loss, active) = train_step(state, data, hyper, self.cfg)
    if self.cfg.objective == 'margin':
      return state, jnp.stack([loss, active])
    return state, loss[None]

  def metric_names(self):
    return ('loss', 'active') if self.cfg.objective == 'margin' else ('loss',)

  def batch_size(self):
    return self.cfg.batch_size

  # It samples its batches: no data axis (research.training.parallel.resolve).
  data_parallel = False

  def keeps_per_step(self):
    return True

  def windows_per_step(self):
    return windows_per_step(self.cfg)


@functools.partial(jax.jit, static_argnames=('nonlinearity',))
def _scores_batch(params, words, casing, nonlinearity):
  return scores(params, words, casing, nonlinearity)


def predict_scores(
  params, words_NxK, casing_NxK, nonlinearity='tanh', batch=8192
):
  """Scores s [N] (numpy) in fixed-size batches (one compiled shape)."""
  if len(words_NxK) == 0:
    return np.zeros((0,), np.float32)
  fn = functools.partial(_scores_batch, nonlinearity=nonlinearity)
  return engine.predict(fn, params, (words_NxK, casing_NxK), batch)


def hinge_stats(
  params,
  words_NxK,
  casing_NxK,
  neg_words_NxMxK,
  neg_casing_NxMxK,
  nonlinearity='tanh',
):
  """Active fraction and mean J of the window margin on fixed pairs."""
  N, M, K = neg_words_NxMxK.shape
  s_N = predict_scores(params, words_NxK, casing_NxK, nonlinearity)
  s_c_NxM = predict_scores(
    params,
    np.asarray(neg_words_NxMxK).reshape(-1, K),
    np.asarray(neg_casing_NxMxK).reshape(-1, K),
    nonlinearity,
  ).reshape(N, M)
  return {
    'active': float(active_fraction(s_N, s_c_NxM)),
    'loss': float(objectives.get_scorer('margin').loss(s_N, s_c_NxM).mean()),
  }


def check_data(data, cfg):
  """Refuses a configuration the training data cannot serve, in one line."""
  objectives.get_scorer(cfg.objective)  # ValueError naming the choices
  if cfg.negatives not in NEGATIVES:
    raise ValueError(f'unknown negatives {cfg.negatives!r}')
  if cfg.corrupt_casing not in CORRUPT_CASINGS:
    raise ValueError(f'unknown corrupt_casing {cfg.corrupt_casing!r}')
  if cfg.objective == 'margin' and data.positives_P.shape[0] == 0:
    raise UserError(
      'no positive training windows: the entity type never '
      'occurs at a window center in train'
    )
  if (
    cfg.objective == 'margin'
    and cfg.negatives == 'corrupt+real'
    and data.negatives_Q.shape[0] == 0
  ):
    raise UserError(
      'no negative training windows to draw real negatives '
      'from; use negatives=corrupt'
    )


def fit(
  params, data, hyper, seeds, cfg, *, num_steps, steps_per_epoch=None, **kw
):
  """The scorer trained for `num_steps` steps (stacked params, [S] hyper,
  S seeds) by the loop driver of every run (driver.fit_task); evaluates
  at step 0 too. Other keywords are fit_task's. Returns (stacked params,
  history, stats)."""

  check_data(data, cfg)
  spe = steps_per_epoch or num_steps
  if num_steps % spe:
    raise ValueError(
      f'num_steps {num_steps} is not a multiple of steps_per_epoch {spe}'
    )
  kw.setdefault('steps_per_call', 200)
  kw.setdefault('eval_every', num_steps)
  return driver.fit_task(
    ScorerTask(cfg),
    params,
    hyper,
    seeds,
    data,
    num_examples=1,
    epochs=num_steps // spe,
    steps_per_epoch=spe,
    eval_at_start=True,
    **kw,
  )[:3]
