"""Sentence-level objectives over window scores, with hand-derived gradients.

Notation (docs/design.md): the window model gives each word t of a sentence
class scores f_t [C]; a tag path y scores

  S(y) = start[y_1] + sum_t f_t[y_t] + sum_{t>1} A[y_{t-1}, y_t] + end[y_T].

* CRF / SLL (Collobert et al. 2011's sentence-level log-likelihood):
  J = log sum_y' exp S(y') - S(y_gold), by the forward algorithm.
* Structured margin: J = max_y' [S(y') + Delta(y', y_gold)] - S(y_gold),
  Delta the Hamming distance, by cost-augmented Viterbi.

Layout: B rows of T positions, each row holding one or more whole sentences
one after another (`research.training.sequence` packs them), then padding:

  mask_BxT    the position holds a word;
  starts_BxT  the word begins a sentence (position 0 of a non-empty row
              always does).

A sentence boundary inside a row is a transition whose score is end[i] +
start[j] instead of A[i, j]; since that score is a sum of a term in i and a
term in j, the row's partition function is the product of its sentences'
ones, its best path their best paths, and its loss the sum of theirs. A row
with one sentence and trailing padding is the usual padded batch. Padding
contributes exactly zero to losses and gradients.

Each objective below sits beside its hand-derived gradient (`*_grads`),
which `research/formulas/autodiff.py`'s references and the tests compare with
`jax.grad`; research.formulas.objectives registers both by name:

* dJ/df_t = marginal_t - onehot(y_t) (forward-backward), dJ/dA = expected
  minus gold transition counts, dJ/dstart and dJ/dend = the marginals of
  the first and last words minus their gold indicators;
* the structured margin: the same indicator counts of the cost-augmented
  best path minus those of the gold path; where best candidates tie, the
  counts of every tied path in the shares jax.grad gives them (each max of
  the recursion splits its unit evenly among its tied arguments), so that
  training with either gradient agrees even where every score ties (the
  softmax model and the transitions start at zero).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Transitions(NamedTuple):
  """A [C, C] (from i to j), start [C], end [C]."""

  A: jax.Array
  start: jax.Array
  end: jax.Array


def init_transitions(num_classes, dtype=jnp.float32):
  C = num_classes
  return Transitions(
    jnp.zeros((C, C), dtype), jnp.zeros(C, dtype), jnp.zeros(C, dtype)
  )


def ends_of(mask_BxT, starts_BxT):
  """The words that end a sentence: the next position is padding, begins a
  sentence, or is past the row."""
  after_B_T = jnp.pad(mask_BxT[:, 1:] & ~starts_BxT[:, 1:], ((0, 0), (0, 1)))
  return mask_BxT & ~after_B_T


def _step_transitions(trans, starts_B):
  """[B, C, C] scores of the transition into a position: A, or end[i] +
  start[j] where the position begins a sentence."""
  boundary_CxC = trans.end[:, None] + trans.start[None, :]
  return jnp.where(starts_B[:, None, None], boundary_CxC, trans.A)


def _time_major(*arrays):
  return tuple(jnp.swapaxes(a, 0, 1) for a in arrays)


# --- Scores of given paths. ---------------------------------------------------


def path_score(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans):
  """S(y) of the tag paths `tags` of each row (summed over its sentences)."""
  m = mask_BxT.astype(f_BxTxC.dtype)
  words = jnp.take_along_axis(f_BxTxC, tags_BxT[..., None], 2)[..., 0]
  inner = mask_BxT[:, 1:] & ~starts_BxT[:, 1:]
  pairs = trans.A[tags_BxT[:, :-1], tags_BxT[:, 1:]]
  first = jnp.where(starts_BxT & mask_BxT, trans.start[tags_BxT], 0.0)
  last = jnp.where(ends_of(mask_BxT, starts_BxT), trans.end[tags_BxT], 0.0)
  return (
    jnp.sum(m * words, 1)
    + jnp.sum(jnp.where(inner, pairs, 0.0), 1)
    + jnp.sum(first, 1)
    + jnp.sum(last, 1)
  )


def path_indicators(tags_BxT, mask_BxT, starts_BxT, num_classes, dtype):
  """dS(y)/d(f, A, start, end): where path y is, as counts.

  Returns (onehot_BxTxC (zero at padding), Transitions of the counts summed
  over rows: A[i, j] how often i -> j inside a sentence, start/end how
  often a sentence begins/ends with each tag).
  """
  onehot = jax.nn.one_hot(tags_BxT, num_classes, dtype=dtype)
  onehot = onehot * mask_BxT[..., None].astype(dtype)
  inner = (mask_BxT[:, 1:] & ~starts_BxT[:, 1:]).astype(dtype)
  pair_counts = jnp.einsum(
    'bti,btj->ij', onehot[:, :-1] * inner[..., None], onehot[:, 1:]
  )
  first = jnp.sum(onehot * starts_BxT[..., None].astype(dtype), (0, 1))
  ends = ends_of(mask_BxT, starts_BxT)
  last = jnp.sum(onehot * ends[..., None].astype(dtype), (0, 1))
  return onehot, Transitions(pair_counts, first, last)


# --- CRF: forward algorithm, forward-backward. --------------------------------


def _forward(f_BxTxC, mask_BxT, starts_BxT, trans):
  """alpha_t[j] = f_t[j] + logsumexp_i(alpha_{t-1}[i] + M_t[i, j]) (M_t: A,
  or end+start at a boundary), carried unchanged over padding. [T, B, C]."""
  f_T, mask_T, starts_T = _time_major(f_BxTxC, mask_BxT, starts_BxT)
  alpha0 = jnp.where(mask_T[0][:, None], trans.start + f_T[0], 0.0)

  def step(alpha_BxC, inputs):
    f_BxC, mask_B, starts_B = inputs
    M = _step_transitions(trans, starts_B)
    new = jax.nn.logsumexp(alpha_BxC[:, :, None] + M, axis=1) + f_BxC
    alpha_BxC = jnp.where(mask_B[:, None], new, alpha_BxC)
    return alpha_BxC, alpha_BxC

  _, alphas = jax.lax.scan(step, alpha0, (f_T[1:], mask_T[1:], starts_T[1:]))
  return jnp.concatenate([alpha0[None], alphas], 0)


def log_partition(f_BxTxC, mask_BxT, starts_BxT, trans):
  """log sum_y exp S(y) per row (0 for an empty row): the forward algorithm
  in log space, a `lax.scan` over positions."""
  alpha_TxBxC = _forward(f_BxTxC, mask_BxT, starts_BxT, trans)
  log_z = jax.nn.logsumexp(alpha_TxBxC[-1] + trans.end, axis=1)
  return jnp.where(mask_BxT[:, 0], log_z, 0.0)


def crf_loss(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans):
  """The CRF / SLL loss J = log Z - S(y_gold) of each row [B]."""
  return log_partition(f_BxTxC, mask_BxT, starts_BxT, trans) - path_score(
    f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans
  )


def _backward(f_BxTxC, mask_BxT, starts_BxT, trans):
  """beta_t[i] = logsumexp_j(M_{t+1}[i, j] + f_{t+1}[j] + beta_{t+1}[j])
  for a word followed by a word, end[i] for the row's last word. [T, B, C]."""
  f_T, mask_T, starts_T = _time_major(f_BxTxC, mask_BxT, starts_BxT)
  B, C = f_T.shape[1:]
  beta_last = jnp.broadcast_to(trans.end, (B, C))

  def step(beta_next_BxC, inputs):
    f_next, mask_next, starts_next = inputs
    M = _step_transitions(trans, starts_next)
    new = jax.nn.logsumexp(M + (f_next + beta_next_BxC)[:, None, :], axis=2)
    # Before padding (or the row's end) a word's beta is end.
    beta_BxC = jnp.where(mask_next[:, None], new, beta_last)
    return beta_BxC, beta_BxC

  _, betas = jax.lax.scan(
    step,
    beta_last,
    (f_T[1:], mask_T[1:], starts_T[1:]),
    reverse=True,
  )
  return jnp.concatenate([betas, beta_last[None]], 0)


def crf_grads(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans):
  """`crf_loss` and its gradients, by forward-backward.

  With alpha, beta as above and log Z:
    marginal_t[j] = exp(alpha_t[j] + beta_t[j] - log Z)          = P(y_t = j)
    pair_t[i, j] = exp(alpha_{t-1}[i] + A[i,j] + f_t[j] + beta_t[j] - log Z)
  dJ/df_t = marginal_t - onehot(y_t); dJ/dA = sum over positions inside a
  sentence of pair_t - gold counts; dJ/dstart (dJ/dend) = the marginals of
  the sentences' first (last) words - their gold indicators.

  Returns (J_B, dJ/df [B, T, C], Transitions of gradients) for J summed
  over the rows.
  """
  C, dtype = f_BxTxC.shape[2], f_BxTxC.dtype
  alpha = jnp.swapaxes(_forward(f_BxTxC, mask_BxT, starts_BxT, trans), 0, 1)
  beta = jnp.swapaxes(_backward(f_BxTxC, mask_BxT, starts_BxT, trans), 0, 1)
  has_words_B = mask_BxT[:, 0]
  log_z_B = jax.nn.logsumexp(alpha[:, -1] + trans.end, axis=1)
  # exp of -inf where a term does not exist (padding): exactly zero, and no
  # overflow from the scores the model gives padding.
  log_marginal = alpha + beta - log_z_B[:, None, None]
  marginal = jnp.exp(jnp.where(mask_BxT[..., None], log_marginal, -jnp.inf))
  inner_BxT = mask_BxT[:, 1:] & ~starts_BxT[:, 1:]
  log_pair = (
    alpha[:, :-1, :, None]
    + trans.A
    + (f_BxTxC[:, 1:] + beta[:, 1:])[:, :, None, :]
    - log_z_B[:, None, None, None]
  )
  pair = jnp.exp(jnp.where(inner_BxT[..., None, None], log_pair, -jnp.inf))
  expected_A = jnp.sum(pair, (0, 1))
  ends = ends_of(mask_BxT, starts_BxT)
  expected_start = jnp.sum(
    marginal * starts_BxT[..., None].astype(dtype), (0, 1)
  )
  expected_end = jnp.sum(marginal * ends[..., None].astype(dtype), (0, 1))
  gold, gold_counts = path_indicators(tags_BxT, mask_BxT, starts_BxT, C, dtype)
  gold_score_B = path_score(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans)
  J_B = jnp.where(has_words_B, log_z_B, 0.0) - gold_score_B
  grads = Transitions(
    expected_A - gold_counts.A,
    expected_start - gold_counts.start,
    expected_end - gold_counts.end,
  )
  return J_B, marginal - gold, grads


# --- Viterbi, structured margin. ----------------------------------------------


def viterbi(f_BxTxC, mask_BxT, starts_BxT, trans):
  """The best path argmax_y S(y) of each row and its score.

  delta_t[j] = f_t[j] + max_i(delta_{t-1}[i] + M_t[i, j]), with the
  maximizing i kept as a back-pointer; the path is read back from the last
  position. Padding carries delta and points each tag to itself, so the path
  holds the last word's tag there (mask it).

  Returns (score_B, path_BxT int32).
  """
  f_T, mask_T, starts_T = _time_major(f_BxTxC, mask_BxT, starts_BxT)
  B, C = f_T.shape[1:]
  delta0 = jnp.where(mask_T[0][:, None], trans.start + f_T[0], 0.0)
  same_BxC = jnp.broadcast_to(jnp.arange(C, dtype=jnp.int32), (B, C))

  def step(delta_BxC, inputs):
    f_BxC, mask_B, starts_B = inputs
    scores_BxCxC = delta_BxC[:, :, None] + _step_transitions(trans, starts_B)
    back_BxC = jnp.argmax(scores_BxCxC, axis=1).astype(jnp.int32)
    new = jnp.max(scores_BxCxC, axis=1) + f_BxC
    keep = mask_B[:, None]
    return jnp.where(keep, new, delta_BxC), jnp.where(keep, back_BxC, same_BxC)

  delta, backs_TxBxC = jax.lax.scan(
    step, delta0, (f_T[1:], mask_T[1:], starts_T[1:])
  )
  final_BxC = delta + trans.end
  last_B = jnp.argmax(final_BxC, axis=1).astype(jnp.int32)

  def trace(tag_B, back_BxC):
    prev_B = jnp.take_along_axis(back_BxC, tag_B[:, None], 1)[:, 0]
    return prev_B, prev_B

  _, earlier = jax.lax.scan(trace, last_B, backs_TxBxC, reverse=True)
  path = jnp.concatenate([earlier, last_B[None]], 0).T
  score = jnp.where(mask_BxT[:, 0], jnp.max(final_BxC, axis=1), 0.0)
  return score, path


def hamming_costs(tags_BxT, mask_BxT, num_classes, dtype):
  """Delta(y', y) as per-word costs: 1 for every tag but the gold one."""
  wrong = 1.0 - jax.nn.one_hot(tags_BxT, num_classes, dtype=dtype)
  return wrong * mask_BxT[..., None].astype(dtype)


def max_path_score(f_BxTxC, mask_BxT, starts_BxT, trans):
  """max_y S(y) per row by the max-plus forward recursion (no back-pointers;
  `jax.grad` of it is the reference for `struct_margin_grads`)."""
  f_T, mask_T, starts_T = _time_major(f_BxTxC, mask_BxT, starts_BxT)
  delta0 = jnp.where(mask_T[0][:, None], trans.start + f_T[0], 0.0)

  def step(delta_BxC, inputs):
    f_BxC, mask_B, starts_B = inputs
    M = _step_transitions(trans, starts_B)
    new = jnp.max(delta_BxC[:, :, None] + M, axis=1) + f_BxC
    return jnp.where(mask_B[:, None], new, delta_BxC), None

  delta, _ = jax.lax.scan(step, delta0, (f_T[1:], mask_T[1:], starts_T[1:]))
  best = jnp.max(delta + trans.end, axis=1)
  return jnp.where(mask_BxT[:, 0], best, 0.0)


def struct_margin_loss(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans):
  """J = max_y' [S(y') + Delta(y', y_gold)] - S(y_gold) of each row [B]."""
  C, dtype = f_BxTxC.shape[2], f_BxTxC.dtype
  augmented = f_BxTxC + hamming_costs(tags_BxT, mask_BxT, C, dtype)
  return max_path_score(augmented, mask_BxT, starts_BxT, trans) - path_score(
    f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans
  )


def _tie_shares(scores, best, axis):
  """1/#ties where scores equal their max `best` along `axis`, else 0: how
  jax.grad of jnp.max splits the unit among tied arguments."""
  tie = (scores == jnp.expand_dims(best, axis)).astype(scores.dtype)
  return tie / jnp.sum(tie, axis=axis, keepdims=True)


def best_path_indicators(f_BxTxC, mask_BxT, starts_BxT, trans):
  """max_y S(y) per row and its (sub)gradient w.r.t. f, A, start, end.

  The gradient is that of the max-plus recursion of `max_path_score`,
  written out backwards: the indicator counts of the best path y^ (the one
  `viterbi` reads back) where it is unique. Let w_t[j] be the weight of tag
  j at word t: at the row's last word the share of j among the best last
  tags (delta + end); w_t[j] is dJ/df_t[j]; for t > 0 it is handed to the
  best predecessors i of j in the shares of their tie,
  share_t[i, j] = [delta_{t-1}[i] + M_t[i, j] = max_i'] / #ties,
  w_{t-1}[i] = sum_j w_t[j] share_t[i, j], and dJ/dM_t[i, j] is
  w_t[j] share_t[i, j] (M_t = A inside a sentence; end[i] + start[j] at a
  boundary, which adds sum_j of it to end[i] and w_t[j] to start[j]); the
  first word's w goes to start. Padding passes w on unchanged. Without
  ties every share is 0 or 1 and the weights are the path's indicators.

  Returns (best_B (0 for an empty row), dS/df [B, T, C] (zero at padding),
  Transitions of the gradients summed over the rows).
  """
  f_T, mask_T, starts_T = _time_major(f_BxTxC, mask_BxT, starts_BxT)
  dtype = f_BxTxC.dtype
  delta0 = jnp.where(mask_T[0][:, None], trans.start + f_T[0], 0.0)

  def forward(delta_BxC, inputs):
    f_BxC, mask_B, starts_B = inputs
    M = _step_transitions(trans, starts_B)
    new = jnp.max(delta_BxC[:, :, None] + M, axis=1) + f_BxC
    return jnp.where(mask_B[:, None], new, delta_BxC), delta_BxC

  rest = (mask_T[1:], starts_T[1:])
  delta_last, prev_TxBxC = jax.lax.scan(forward, delta0, (f_T[1:], *rest))
  final_BxC = delta_last + trans.end
  best_B = jnp.max(final_BxC, axis=1)
  has_words_B = mask_T[0]
  w_last = _tie_shares(final_BxC, best_B, 1) * has_words_B[:, None]

  def backward(carry, inputs):
    w_BxC, dA, dstart, dend = carry
    delta_prev, mask_B, starts_B = inputs
    scores_BxCxC = delta_prev[:, :, None] + _step_transitions(trans, starts_B)
    share = _tie_shares(scores_BxCxC, jnp.max(scores_BxCxC, axis=1), 1)
    w_word = jnp.where(mask_B[:, None], w_BxC, 0.0)
    flow_BxCxC = share * w_word[:, None, :]
    inner_B = (mask_B & ~starts_B).astype(dtype)
    boundary_B = (mask_B & starts_B).astype(dtype)
    dA = dA + jnp.einsum('b,bij->ij', inner_B, flow_BxCxC)
    dend = dend + jnp.einsum('b,bij->i', boundary_B, flow_BxCxC)
    dstart = dstart + jnp.einsum('b,bj->j', boundary_B, w_word)
    w_prev = jnp.sum(flow_BxCxC, axis=2) + jnp.where(
      mask_B[:, None], 0.0, w_BxC
    )
    return (w_prev, dA, dstart, dend), w_word

  zeros = init_transitions(f_T.shape[2], dtype)
  (w_first, dA, dstart, dend), w_rest = jax.lax.scan(
    backward,
    (w_last, zeros.A, zeros.start, zeros.end),
    (prev_TxBxC, *rest),
    reverse=True,
  )
  w_first = jnp.where(mask_T[0][:, None], w_first, 0.0)
  df_BxTxC = jnp.swapaxes(jnp.concatenate([w_first[None], w_rest], 0), 0, 1)
  grads = Transitions(
    dA, dstart + jnp.sum(w_first, 0), dend + jnp.sum(w_last, 0)
  )
  return jnp.where(has_words_B, best_B, 0.0), df_BxTxC, grads


def struct_margin_grads(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans):
  """`struct_margin_loss` and its subgradient: with y^ the cost-augmented
  best path, indicators(y^) - indicators(y_gold) for f, A, start, end (zero
  where y^ = y_gold); tied best paths share the indicators as jax.grad
  splits them (`best_path_indicators`). Returns (J_B, dJ/df,
  Transitions)."""
  C, dtype = f_BxTxC.shape[2], f_BxTxC.dtype
  augmented = f_BxTxC + hamming_costs(tags_BxT, mask_BxT, C, dtype)
  best_B, hat, hat_counts = best_path_indicators(
    augmented, mask_BxT, starts_BxT, trans
  )
  gold_B = path_score(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans)
  gold, gold_counts = path_indicators(tags_BxT, mask_BxT, starts_BxT, C, dtype)
  grads = Transitions(*(h - g for h, g in zip(hat_counts, gold_counts)))
  return best_B - gold_B, hat - gold, grads
