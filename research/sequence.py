"""Training on whole sentences: packed rows, the sentence task, decoding.

The window model scores every word of a sentence; a sentence-level
objective (research.crf) or a window-level one summed over the words turns
the scores into a loss. Sentences are packed whole, longest first, into
rows of T positions (first fit), several short ones to a row, so that a
step sees B full rows (`batch_size` // T of them) rather than B padded
sentences: few positions are padding, and the forward algorithm's scan
runs T steps for B*T words.

The word-vector and feature rows stay sparse (research.optim), exactly as
in the window classifier: gradients are taken w.r.t. the gathered rows
(`optim.table_grads` routes them); the step hands over data gradients
only, and the optimizer adds the L2 term's.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research import crf
from research import engine
from research import model as model_lib
from research import objectives
from research import optim
from research import parallel
from research import rows

NEG = -1e4  # the score of a forbidden transition when decoding


class Packed(NamedTuple):
  """Sentences packed into rows.

  tokens: [R, T] int32 index of each position's word in the split's
    windows (n, one past the last, for padding);
  starts: [R, T] bool, the word begins a sentence.
  """

  tokens: np.ndarray
  starts: np.ndarray


def row_length(lengths, minimum=64, multiple=8):
  """The default T: the longest sentence, rounded up, at least `minimum`."""
  longest = max(lengths, default=1)
  return max(minimum, -(-longest // multiple) * multiple)


def pack(lengths, T):
  """Packs sentences of `lengths` words, in order of their words, into rows
  of T positions: longest first, each into the first row it fits (first
  fit decreasing). Returns Packed (padding index = sum(lengths))."""
  lengths = np.asarray(lengths, np.int64)
  n = int(lengths.sum())
  if len(lengths) and lengths.max() > T:
    raise ValueError(f'a sentence of {lengths.max()} words exceeds T={T}')
  first_word = np.cumsum(lengths) - lengths
  order = np.argsort(-lengths, kind='stable')
  free = np.zeros(0, np.int64)
  row_of = np.zeros(len(lengths), np.int64)
  offset = np.zeros(len(lengths), np.int64)
  for i in order:
    if lengths[i] == 0:
      row_of[i], offset[i] = -1, 0
      continue
    fits = np.flatnonzero(free >= lengths[i])
    if len(fits):
      r = fits[0]
    else:
      r = len(free)
      free = np.append(free, T)
    row_of[i], offset[i] = r, T - free[r]
    free[r] -= lengths[i]
  R = max(len(free), 1)
  tokens = np.full((R, T), n, np.int32)
  starts = np.zeros((R, T), bool)
  for i in np.flatnonzero(lengths > 0):
    r, o, ln = row_of[i], offset[i], lengths[i]
    tokens[r, o : o + ln] = first_word[i] + np.arange(ln)
    starts[r, o] = True
  return Packed(tokens, starts)


def pack_windows(windows, lengths, T):
  """`pack` and the device arrays of the sentence task: the windows (with a
  padding window appended at index n), their labels, and the rows."""
  packed = pack(lengths, T)
  n = len(windows)

  def with_pad(a, fill):
    return np.concatenate([a, np.full((1,) + a.shape[1:], fill, a.dtype)])

  pad_word = np.ones_like(windows.words[:1])  # PAD_RIGHT (id 1) everywhere
  words = np.concatenate([windows.words, pad_word]) if n else pad_word
  arrays = [words, with_pad(windows.casing, 0)]
  feats = windows.feats
  if feats is not None:
    arrays.append(np.concatenate([feats, feats[:1]]))  # any rows: masked
  arrays.append(with_pad(windows.labels, 0))
  return packed, tuple(arrays)


def transitions(params):
  return crf.Transitions(params['A'], params['start'], params['end'])


def window_scores(params, E_MxKxd, casing_MxK, feat_MxKxFxg, model_cfg, key):
  x_MxD = model_lib.concat_window(
    E_MxKxd, params['L_case'][casing_MxK], feat_MxKxFxg
  )
  return model_lib.class_scores(params, x_MxD, model_cfg, key)


def sentence_loss(params, f_BxTxC, tags_BxT, mask_BxT, starts_BxT, objective):
  """The objective summed over the rows' sentences, per word (/ n words)."""
  n = jnp.maximum(jnp.sum(mask_BxT), 1).astype(f_BxTxC.dtype)
  spec = objectives.get(objective)
  if spec.sentence_level:
    J = spec.loss(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, transitions(params))
    return jnp.sum(J) / n
  B, T, C = f_BxTxC.shape
  J = spec.loss(f_BxTxC.reshape(B * T, C), tags_BxT.ravel())
  return jnp.sum(jnp.where(mask_BxT.ravel(), J, 0.0)) / n


def batch_grads(
  dense, E, casing, feat, tags, mask, starts, model_cfg, cfg, key
):
  """(loss, grads of the dense params, of E, of the feature rows) for one
  batch of rows, by jax.grad or the hand derivation; no L2 (the optimizer
  adds it, `optim.apply_gradients`)."""
  if cfg.grad == 'manual':
    from research import manual_grads  # noqa: PLC0415 (only when asked)

    loss, g_dense, g_E, g_feat = manual_grads.sentence_batch_grads(
      dense, E, casing, feat, tags, mask, starts, model_cfg, cfg.objective
    )
  else:
    B, T = tags.shape

    def data_loss(dense, E, feat):
      f = window_scores(dense, E, casing, feat, model_cfg, key)
      return sentence_loss(
        dense, f.reshape(B, T, -1), tags, mask, starts, cfg.objective
      )

    loss, (g_dense, g_E, g_feat) = jax.value_and_grad(data_loss, (0, 1, 2))(
      dense, E, feat
    )
  return loss, g_dense, g_E, g_feat


class SentenceTask(NamedTuple):
  """Packed sentence rows for `engine.Loop`; data = (words, casing[, feats],
  labels, tokens, starts) device arrays (`pack_windows`).

  rows_per_step: B; words_per_row: the mean number of words in a row (for
  the words/s count).
  """

  model_cfg: model_lib.ModelConfig
  cfg: NamedTuple  # classifier.TrainConfig
  rows_per_step: int
  words_per_row: float
  has_features: bool

  def init_state(self, params, seed):
    return optim.init_state(
      params, self.cfg, jax.random.fold_in(jax.random.key(seed), 1)
    )

  def order(self, seed, epoch, n):
    return engine.epoch_order(seed, epoch, n)

  def step(self, state, data, order_N, index, hyper):
    if self.has_features:
      words, casing, feats, labels, tokens, starts = data
    else:
      (words, casing, labels, tokens, starts), feats = data, None
    cfg, model_cfg = self.cfg, self.model_cfg
    B = self.rows_per_step
    idx = jax.lax.dynamic_slice_in_dim(order_N, index * B, B)
    tok_BxT, starts_BxT = tokens[idx], starts[idx]
    mask_BxT = tok_BxT < words.shape[0] - 1
    tok_M = tok_BxT.reshape(-1)
    words_MxK, casing_MxK = words[tok_M], casing[tok_M]
    params = state.params
    key, drop_key, word_key = state.key, None, None
    if model_cfg.dropout > 0 or cfg.word_dropout > 0:
      key, drop_key, word_key = jax.random.split(state.key, 3)
      drop_key = drop_key if model_cfg.dropout > 0 else None
    if cfg.word_dropout > 0:
      # A dropped word reads <unk>'s vector (padding is never dropped).
      drop = parallel.shard_rows(
        lambda m: jax.random.bernoulli(
          word_key, cfg.word_dropout, (m,) + words_MxK.shape[1:]
        ),
        words_MxK.shape[0],
      )
      words_MxK = jnp.where(drop & (words_MxK > 2), 2, words_MxK)
    tables = ('L', 'L_feat')  # read through their gathered rows
    dense = {
      k: params[k] for k in optim.dense_keys(params, cfg) if k not in tables
    }
    E = rows.take(params['L'], words_MxK)
    feat_ids = feat = None
    if feats is not None:
      feat_ids = feats[tok_M]
      feat = rows.take(params['L_feat'], feat_ids)
    loss, g_dense, g_E, g_feat = batch_grads(
      dense,
      E,
      casing_MxK,
      feat,
      labels[tok_BxT],
      mask_BxT,
      starts_BxT,
      model_cfg,
      cfg,
      drop_key,
    )
    gathered = {'L': (words_MxK, E, g_E)}
    if feats is not None:
      gathered['L_feat'] = (feat_ids, feat, g_feat)
    g_tables, row_grads = optim.table_grads(params, cfg, gathered)
    g_dense.update(g_tables)
    state, loss = optim.apply_gradients(
      state, g_dense, hyper, cfg, key, row_grads, loss, jnp.sum(mask_BxT)
    )
    return state, loss[None]

  def metric_names(self):
    return ('loss',)

  def batch_size(self):
    return self.rows_per_step

  def with_batch(self, rows_per_step):
    """The task on one device of a data axis: its share of the rows."""
    return self._replace(rows_per_step=rows_per_step)

  def keeps_per_step(self):
    return False

  def windows_per_step(self):
    return self.rows_per_step * self.words_per_row


def init_transitions(params, num_classes):
  """params with A, start, end (zeros) added, for a sentence-level objective."""
  t = crf.init_transitions(num_classes)
  return dict(params, A=t.A, start=t.start, end=t.end)


def task_and_data(train, lengths, model_cfg, cfg, T=None):
  """The sentence task of the training windows `train` (sentences of
  `lengths` words) packed into rows of T positions (default `row_length`):
  (task, device data, number of rows, stats: row_length, rows,
  rows_per_step and fill, the words / positions)."""
  T = T or row_length(lengths)
  packed, arrays = pack_windows(train, lengths, T)
  R = len(packed.tokens)
  B = max(1, min(cfg.batch_size // T, R))
  words = int(np.sum(lengths))
  task = SentenceTask(model_cfg, cfg, B, words / R, train.feats is not None)
  data = tuple(jnp.asarray(a) for a in arrays) + (
    jnp.asarray(packed.tokens),
    jnp.asarray(packed.starts),
  )
  stats = dict(row_length=T, rows=R, rows_per_step=B, fill=words / (R * T))
  return task, data, R, stats


def fit(
  params, train, lengths, hyper, seeds, model_cfg, cfg, *, epochs, T=None, **kw
):
  """engine.fit of the sentence task (`task_and_data`) on the training
  windows `train` of sentences of `lengths` words (stacked params, [S]
  hyper, S seeds). Returns engine.fit's (params, history, stats), stats
  with the task's added."""
  task, data, R, task_stats = task_and_data(train, lengths, model_cfg, cfg, T)
  params, history, stats = engine.fit(
    task, params, hyper, seeds, data, num_examples=R, epochs=epochs, **kw
  )
  return params, history, dict(stats, **task_stats)


# --- Prediction. --------------------------------------------------------------


def decode_transitions(params, num_classes, allowed, objective):
  """The transitions Viterbi decodes with: the learned ones (zeros for a
  window-level objective) plus NEG where `allowed` (from
  tagschemes.valid_transitions) forbids, or None to decode by argmax."""
  C = num_classes
  sentence_level = objectives.is_sentence_level(objective)
  if allowed is None and not sentence_level:
    return None
  if sentence_level:
    t = transitions(params)
  else:
    t = crf.init_transitions(C)
  if allowed is not None:
    ok_CxC, first_C, last_C = (jnp.asarray(a) for a in allowed)
    t = crf.Transitions(
      jnp.where(ok_CxC, t.A, NEG),
      jnp.where(first_C, t.start, NEG),
      jnp.where(last_C, t.end, NEG),
    )
  return t


@functools.partial(jax.jit, static_argnames=('model_cfg', 'log_probs'))
def _row_scores(params, words, casing, feats, model_cfg, log_probs):
  """Class scores f [M, C] of windows; for an ensemble (params with a
  leading member axis) the mean over members."""

  def one(p):
    L_feat = p.get('L_feat')
    x = model_lib.window_vectors(
      p['L'], p['L_case'], words, casing, L_feat, feats
    )
    f = model_lib.class_scores(p, x, model_cfg)
    return jax.nn.log_softmax(f) if log_probs else f

  if params['L'].ndim == 3:
    return jnp.mean(jax.vmap(one)(params), 0)
  return one(params)


@jax.jit
def _viterbi(f_BxTxC, mask_BxT, starts_BxT, trans):
  return crf.viterbi(f_BxTxC, mask_BxT, starts_BxT, trans)[1]


def predict(
  params,
  windows,
  lengths,
  model_cfg,
  trans,
  *,
  log_probs=False,
  T=None,
  batch=8192,
):
  """Predicted tag ids [N] of a split's windows (sentences of `lengths`).

  trans: Transitions to decode with by Viterbi over each sentence, or None
  for the argmax of each word's scores. log_probs: decode log softmax(f)
  (a window-level cross-entropy model's log-probabilities). For an
  ensemble pass params and trans with a leading member axis: scores and
  transitions are averaged.
  """
  n = len(windows)
  feats = windows.feats
  arrays = (windows.words, windows.casing) + (() if feats is None else (feats,))

  def scores(p, w, c, *fe):
    return _row_scores(p, w, c, fe[0] if fe else None, model_cfg, log_probs)

  f_NxC = engine.predict(scores, params, arrays, batch)
  if trans is None:
    return np.argmax(f_NxC, axis=1).astype(np.int32)
  if trans.A.ndim == 3:
    trans = jax.tree.map(lambda a: jnp.mean(a, 0), trans)
  T = T or row_length(lengths)
  packed = pack(lengths, T)
  f_pad = np.concatenate([f_NxC, np.zeros((1, f_NxC.shape[1]), f_NxC.dtype)])
  out = np.zeros(n, np.int32)
  rows_per_call = max(1, batch // T)
  for r0 in range(0, len(packed.tokens), rows_per_call):
    tok = packed.tokens[r0 : r0 + rows_per_call]
    st = packed.starts[r0 : r0 + rows_per_call]
    pad = rows_per_call - len(tok)
    if pad and len(packed.tokens) > rows_per_call:
      tok = np.pad(tok, ((0, pad), (0, 0)), constant_values=n)
      st = np.pad(st, ((0, pad), (0, 0)))
    mask = tok < n
    path = np.asarray(_viterbi(jnp.asarray(f_pad[tok]), mask, st, trans))
    out[tok[mask]] = path[mask]
  return out


def sentence_lengths(sentences):
  return [len(s.tokens) for s in sentences]
