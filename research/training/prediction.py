"""Prediction: class scores of a split's windows and their decoding, left
on the device with one transfer of the predictions (`predict`: `scores`,
then `decode`, the bias against O added and Viterbi run over the
sentences packed in rows of research.training.sequence); an ensemble's
members are averaged. research.setup.predict_each is its one caller for a
Dataset, research.evaluation.tagging's for a saved model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from research.formulas import crf
from research.formulas import model as model_lib
from research.training import engine
from research.training import sequence

NEG = -1e4  # the score of a forbidden transition when decoding


def decode_transitions(params, num_classes, allowed, objective):
  """The transitions Viterbi decodes with: the learned ones (zeros for a
  window-level objective) plus NEG where `allowed` (from
  tagschemes.valid_transitions) forbids, or None to decode by argmax."""
  C = num_classes
  sentence_level = objective.sentence_level
  if allowed is None and not sentence_level:
    return None
  if sentence_level:
    t = sequence.transitions(params)
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


def _members_mean(one, params, mode):
  """one(params) of a model; of an ensemble (params with a leading member
  axis) the mean over its members, computed one after another ('map', a
  CPU's: each member as its own model) or batched ('vmap'), as
  engine.stack_mode runs a stack."""
  if params['L'].ndim != 3:
    return one(params)
  f = jax.lax.map(one, params) if mode == 'map' else jax.vmap(one)(params)
  return jnp.mean(f, 0)


@functools.partial(jax.jit, static_argnames=('model_cfg', 'log_probs', 'mode'))
def _row_scores(params, words, casing, feats, model_cfg, log_probs, mode):
  """Class scores f [M, C] of windows; for an ensemble (params with a
  leading member axis) the mean over members (`_members_mean`)."""

  def one(p):
    L_feat = p.get('L_feat')
    x = model_lib.window_vectors(
      p['L'], p['L_case'], words, casing, L_feat, feats
    )
    f = model_lib.class_scores(p, x, model_cfg)
    return jax.nn.log_softmax(f) if log_probs else f

  return _members_mean(one, params, mode)


@functools.partial(jax.jit, static_argnames=('model_cfg', 'log_probs', 'mode'))
def _packed_scores(
  params, words, casing, feats, spellings, starts, mask, model_cfg, log_probs,
  mode,
):  # fmt: skip
  """Class scores f [B, T, C] of the windows of B packed rows (the arrays
  given per row position: words [B, T, K], ..., spellings [B, T, P] or
  None, starts and mask [B, T]), with the character CNN and the dilated
  encoder; an ensemble's mean as `_row_scores`."""
  B, T, K = words.shape
  words_MxK, casing_MxK = words.reshape(B * T, K), casing.reshape(B * T, K)
  feats = None if feats is None else feats.reshape(B * T, *feats.shape[2:])

  def one(p):
    slots = None
    if spellings is not None:
      E_char = p['L_char'][spellings]
      slots = sequence.char_slots(p, spellings, E_char, words >= 2)
    feat = None if feats is None else p['L_feat'][feats]
    f = sequence.window_scores(
      p, p['L'][words_MxK], casing_MxK, feat, model_cfg, None, slots,
      layout=(starts, mask),
    )  # fmt: skip
    f = jax.nn.log_softmax(f) if log_probs else f
    return f.reshape(B, T, -1)

  return _members_mean(one, params, mode)


def _scores_by_rows(params, windows, lengths, model_cfg, log_probs, T, batch):
  """Class scores f [N, C] of a split's windows computed over its packed
  rows (the character CNN and the dilated encoder read each word's
  neighbors in its row)."""
  packed, arrays = sequence.pack_windows(windows, lengths, T)
  arrays = arrays[:-1]  # not the labels
  n, has_feats = len(windows), windows.feats is not None
  per_call, mode = max(1, batch // T), engine.stack_mode()
  outs = []
  for r0 in range(0, len(packed.tokens), per_call):
    tok = packed.tokens[r0 : r0 + per_call]
    starts = packed.starts[r0 : r0 + per_call]
    if len(packed.tokens) > per_call:  # one compiled shape
      pad = ((0, per_call - len(tok)), (0, 0))
      tok = np.pad(tok, pad, constant_values=n)
      starts = np.pad(starts, pad)
    at = [a[tok] for a in arrays]
    feats = at[2] if has_feats else None
    spellings = at[-1] if windows.chars is not None else None
    f = _packed_scores(
      params, at[0], at[1], feats, spellings, starts, tok < n, model_cfg,
      log_probs, mode,
    )  # fmt: skip
    outs.append((tok, f))
  # One scatter on the device: the rows' padding (index n) lands past n.
  tok = np.concatenate([t for t, _ in outs]).reshape(-1)
  f = jnp.concatenate([f for _, f in outs])
  f = f.reshape(-1, f.shape[-1])
  return jnp.zeros((n + 1, f.shape[-1]), f.dtype).at[tok].set(f)[:n]


@jax.jit
def _viterbi_rows(f_pad, tokens_BxT, mask_BxT, starts_BxT, trans):
  """The Viterbi paths [B, T] of B packed rows of scores f_pad[tokens]."""
  return crf.viterbi(f_pad[tokens_BxT], mask_BxT, starts_BxT, trans)[1]


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
  bias_C=None,
):
  """Predicted tag ids [N] of a split's windows (sentences of `lengths`):
  `decode` of their `scores`.

  trans: Transitions to decode with by Viterbi over each sentence, or None
  for the argmax of each word's scores. log_probs: decode log softmax(f)
  (a window-level cross-entropy model's log-probabilities). For an
  ensemble pass params and trans with a leading member axis: scores and
  transitions are averaged. bias_C [C]: added to every word's scores
  before decoding (research.setup.predict's bias against O), or None.
  """
  T = T or sequence.row_length(lengths)
  f_NxC = scores(params, windows, lengths, model_cfg, log_probs, T, batch)
  return decode(f_NxC, lengths, trans, T=T, batch=batch, bias_C=bias_C)


def scores(params, windows, lengths, model_cfg, log_probs, T, batch=8192):
  """Class scores f [N, C] of a split's windows (sentences of `lengths`,
  packed in rows of T for the models that read a row), left on the
  device: an ensemble's mean over members (`predict`)."""
  feats = windows.feats
  arrays = (windows.words, windows.casing) + (() if feats is None else (feats,))

  def fn(p, w, c, *fe):
    feats = fe[0] if fe else None
    return _row_scores(p, w, c, feats, model_cfg, log_probs, mode)

  mode = engine.stack_mode()
  if windows.chars is None and model_cfg.model != 'dilated':
    return engine.predict(fn, params, arrays, batch, host=False)
  return _scores_by_rows(
    params, windows, lengths, model_cfg, log_probs, T, batch
  )


def decode(f_NxC, lengths, trans, *, T=None, batch=8192, bias_C=None):
  """Predicted tag ids [N] (numpy) of class scores f [N, C] (on the device)
  of sentences of `lengths` words: the argmax of each word's scores
  (trans None) or Viterbi over each sentence (`predict`), bias_C added
  first. The work stays on the device: one transfer of the predictions."""
  n, C = f_NxC.shape
  if bias_C is not None:
    f_NxC = f_NxC + jnp.asarray(bias_C, f_NxC.dtype)
  if trans is None:
    return np.asarray(jnp.argmax(f_NxC, axis=1)).astype(np.int32)
  if trans.A.ndim == 3:
    trans = jax.tree.map(lambda a: jnp.mean(a, 0), trans)
  T = T or sequence.row_length(lengths)
  packed = sequence.pack(lengths, T)
  # Index n, the rows' padding, reads zeros; the length rounded up to a
  # power of two (at least 1024): few compiled shapes over the splits.
  size = max(1024, 1 << n.bit_length())
  f_pad = jnp.concatenate([f_NxC, jnp.zeros((size - n, C), f_NxC.dtype)])
  rows_per_call = max(1, batch // T)
  tokens, paths = [], []
  for r0 in range(0, len(packed.tokens), rows_per_call):
    tok = packed.tokens[r0 : r0 + rows_per_call]
    st = packed.starts[r0 : r0 + rows_per_call]
    pad = rows_per_call - len(tok)
    if pad and len(packed.tokens) > rows_per_call:
      tok = np.pad(tok, ((0, pad), (0, 0)), constant_values=n)
      st = np.pad(st, ((0, pad), (0, 0)))
    tokens.append(tok)
    paths.append(_viterbi_rows(f_pad, tok, tok < n, st, trans))
  out = np.zeros(n, np.int32)
  for tok, path in zip(tokens, jax.device_get(paths)):
    mask = tok < n
    out[tok[mask]] = path[mask]
  return out
