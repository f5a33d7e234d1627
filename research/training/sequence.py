"""Training on whole sentences: packed rows and the sentence task (their
prediction: research.training.prediction).

The window model scores every word of a sentence; a sentence-level objective
(research.formulas.crf) or a window-level one summed over the words turns the
scores into a loss. Sentences are packed whole, longest first, into rows of T
positions (first fit), several short ones to a row, so that a step sees B full
rows (`batch_size` // T of them) rather than B padded sentences: few positions
are padding, and the forward algorithm's scan runs T steps for B*T words.

The word-vector and feature rows stay sparse (research.training.optim), exactly
as in the window classifier: gradients are taken w.r.t. the gathered rows
(`optim.table_grads` routes them); the step hands over data gradients only, and
the optimizer adds the L2 term's."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.data import cache
from research.formulas import chars as chars_lib
from research.formulas import crf
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import engine
from research.training import optim
from research.training import parallel
from research.training import rows


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


_PACKED = cache.Recent()  # (T, the lengths' bytes) -> Packed


def pack(lengths, T):
  """Packs sentences of `lengths` words, in order of their words, into rows
  of T positions: longest first, each into the first row it fits (first
  fit decreasing). Returns Packed (padding index = sum(lengths); its arrays
  read-only: the packing of the last few splits is remembered)."""
  lengths = np.asarray(lengths, np.int64)
  return _PACKED.get((T, lengths.tobytes()), lambda: _first_fit(lengths, T))


def _first_fit(lengths, T):
  """`pack` of lengths [S] (int64)."""
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
  tokens.setflags(write=False)
  starts.setflags(write=False)
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
  if windows.chars is not None:
    arrays.append(with_pad(windows.chars, 0))  # the empty spelling
  arrays.append(with_pad(windows.labels, 0))
  return packed, tuple(arrays)


def transitions(params):
  return crf.Transitions(params['A'], params['start'], params['end'])


def window_scores(
  params, E_MxKxd, casing_MxK, feat_MxKxFxg, model_cfg, key, char_MxKxH=None,
  data_devices=1, layout=None,
):  # fmt: skip
  """Class scores f [M, C] of the M = B T windows of B packed rows (layout:
  their (starts_BxT, mask_BxT), which the dilated model reads)."""
  x_MxD = model_lib.concat_window(
    E_MxKxd, params['L_case'][casing_MxK], feat_MxKxFxg, char_MxKxH
  )
  return model_lib.class_scores(
    params, x_MxD, model_cfg, key, data_devices, layout
  )


class CharRows(NamedTuple):
  """What the character CNN reads of B packed rows of T words: the words'
  spellings ids_BxTxP, their rows E_BxTxPxe of L_char, and which window
  slots hold a word (is_word_BxTxK; the others are padding)."""

  ids: jax.Array
  E: jax.Array
  is_word: jax.Array


def char_slots(params, ids_BxTxP, E_BxTxPxe, is_word_BxTxK):
  """The character features of every window slot [B*T, K, H]: the CNN of
  research.formulas.chars over each word of the rows, then each slot given its
  word's features (`chars.slot_features`)."""
  h_BxTxH, _ = chars_lib.char_features_of_rows(
    E_BxTxPxe, params['W_char'], params['b_char'], ids_BxTxP
  )
  slots = chars_lib.slot_features(h_BxTxH, is_word_BxTxK)
  B, T, K, H = slots.shape
  return slots.reshape(B * T, K, H)


def sentence_loss(params, f_BxTxC, tags_BxT, mask_BxT, starts_BxT, objective):
  """The objective (a research.formulas.objectives record) summed over the
  rows' sentences, per word (/ n words)."""
  n = jnp.maximum(jnp.sum(mask_BxT), 1).astype(f_BxTxC.dtype)
  if objective.sentence_level:
    J = objective.loss(
      f_BxTxC, tags_BxT, mask_BxT, starts_BxT, transitions(params)
    )
    return jnp.sum(J) / n
  B, T, C = f_BxTxC.shape
  J = objective.loss(f_BxTxC.reshape(B * T, C), tags_BxT.ravel())
  return jnp.sum(jnp.where(mask_BxT.ravel(), J, 0.0)) / n


def batch_grads(
  dense, E, casing, feat, tags, mask, starts, model_cfg, cfg, objective, key,
  chars=None,
):  # fmt: skip
  """(loss, grads of the dense params, of E, of the feature rows, of the
  character rows chars.E) for one batch of rows (chars: CharRows or None),
  by jax.grad or the hand derivation; no L2 (the optimizer adds it,
  `optim.apply_gradients`)."""
  if cfg.grad == 'manual':
    from research.formulas import manual_grads  # noqa: PLC0415 (only when asked)

    return manual_grads.sentence_batch_grads(
      dense, E, casing, feat, tags, mask, starts, model_cfg, objective,
      chars,
    )  # fmt: skip
  B, T = tags.shape

  def data_loss(dense, E, feat, E_char):
    slots = None
    if chars is not None:
      slots = char_slots(dense, chars.ids, E_char, chars.is_word)
    f = window_scores(
      dense, E, casing, feat, model_cfg, key, slots, cfg.data_devices,
      (starts, mask),
    )  # fmt: skip
    return sentence_loss(
      dense, f.reshape(B, T, -1), tags, mask, starts, objective
    )

  E_char = None if chars is None else chars.E
  loss, grads = jax.value_and_grad(data_loss, (0, 1, 2, 3))(
    dense, E, feat, E_char
  )
  return (loss, *grads)


class SentenceTask(NamedTuple):
  """Packed sentence rows for `engine.Loop`; data = (words, casing[, feats],
  labels, tokens, starts) device arrays (`pack_windows`).

  rows_per_step: B; words_per_row: the mean number of words in a row (for
  the words/s count).
  """

  model_cfg: model_lib.ModelConfig
  cfg: NamedTuple  # classifier.TrainConfig
  objective: objectives.Objective
  rows_per_step: int
  words_per_row: float
  has_features: bool
  has_chars: bool = False

  def init_state(self, params, seed):
    return optim.init_state(
      params, self.cfg, jax.random.fold_in(jax.random.key(seed), 1)
    )

  def order(self, seed, epoch, n):
    return engine.epoch_order(seed, epoch, n)

  def step(self, state, data, order_N, index, hyper):
    words, casing, *extra, labels, tokens, starts = data
    feats = extra.pop(0) if self.has_features else None
    spellings = extra.pop(0) if self.has_chars else None
    cfg, model_cfg = self.cfg, self.model_cfg
    B = self.rows_per_step
    idx = jax.lax.dynamic_slice_in_dim(order_N, index * B, B)
    tok_BxT, starts_BxT = tokens[idx], starts[idx]
    mask_BxT = tok_BxT < words.shape[0] - 1
    tok_M = tok_BxT.reshape(-1)
    words_MxK, casing_MxK = words[tok_M], casing[tok_M]
    chars = None
    if spellings is not None:
      ids_BxTxP = spellings[tok_BxT]
      chars = CharRows(
        ids_BxTxP,
        rows.take(state.params['L_char'], ids_BxTxP),
        (words_MxK >= 2).reshape(*tok_BxT.shape, -1),  # ids 0, 1: padding
      )
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
        cfg.data_devices,
      )
      words_MxK = jnp.where(drop & (words_MxK > 2), 2, words_MxK)
    tables = ('L', 'L_feat', 'L_char')  # read through their gathered rows
    dense = {
      k: params[k] for k in optim.dense_keys(params, cfg) if k not in tables
    }
    E = rows.take(params['L'], words_MxK)
    feat_ids = feat = None
    if feats is not None:
      feat_ids = feats[tok_M]
      feat = rows.take(params['L_feat'], feat_ids)
    loss, g_dense, g_E, g_feat, g_char = batch_grads(
      dense,
      E,
      casing_MxK,
      feat,
      labels[tok_BxT],
      mask_BxT,
      starts_BxT,
      model_cfg,
      cfg,
      self.objective,
      drop_key,
      chars,
    )
    gathered = {'L': (words_MxK, E, g_E)}
    if feats is not None:
      gathered['L_feat'] = (feat_ids, feat, g_feat)
    if chars is not None:
      gathered['L_char'] = (chars.ids, chars.E, g_char)
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

  def on_data_axis(self, devices):
    """The task on one of `devices` of a data axis: its share of the
    rows, and the axis's size (its steps combine across it)."""
    return self._replace(
      rows_per_step=self.rows_per_step // devices,
      cfg=self.cfg._replace(data_devices=devices),
    )

  def keeps_per_step(self):
    return False

  def windows_per_step(self):
    return self.rows_per_step * self.words_per_row


def init_transitions(params, num_classes):
  """params with A, start, end (zeros) added, for a sentence-level objective."""
  t = crf.init_transitions(num_classes)
  return dict(params, A=t.A, start=t.start, end=t.end)


def task_and_data(train, lengths, model_cfg, cfg, objective, T=None):
  """The sentence task of the training windows `train` (sentences of
  `lengths` words) packed into rows of T positions (default `row_length`):
  (task, device data, number of rows, stats: row_length, rows,
  rows_per_step and fill, the words / positions)."""
  T = T or row_length(lengths)
  packed, arrays = pack_windows(train, lengths, T)
  R = len(packed.tokens)
  B = max(1, min(cfg.batch_size // T, R))
  words = int(np.sum(lengths))
  task = SentenceTask(
    model_cfg,
    cfg,
    objective,
    B,
    words / R,
    train.feats is not None,
    train.chars is not None,
  )
  data = tuple(jnp.asarray(a) for a in arrays) + (
    jnp.asarray(packed.tokens),
    jnp.asarray(packed.starts),
  )
  stats = dict(row_length=T, rows=R, rows_per_step=B, fill=words / (R * T))
  return task, data, R, stats


def sentence_lengths(sentences):
  return [len(s.tokens) for s in sentences]
