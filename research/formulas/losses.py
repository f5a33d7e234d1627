"""Objectives of the decks, one value per window, each beside its
hand-derived error signal (`*_delta`), and the L2 penalty.

The caller reduces (mean over the batch). The objectives are registered by name
in research.formulas.objectives. `l2_penalty` is the L2 term of the training
objective; its gradient lambda * theta is added by the optimizer
(research.training.optim.add_l2), not by the tasks, over the same
`regularized_keys`."""

import jax
import jax.numpy as jnp


def cross_entropy(f_NxC, y_N):
  """Cross-entropy J = -log softmax(f)_y (= KL(p_gold || q), H(p_gold) = 0)."""
  return -jnp.take_along_axis(jax.nn.log_softmax(f_NxC), y_N[:, None], 1)[:, 0]


def cross_entropy_delta(f_NxC, y_N):
  """Cross-entropy J = -log softmax(f)_y and its error signal dJ/df.

  Deck (softmax window classifier, cross-entropy): with p = softmax(f) and
  the one-hot target t, J = log sum_c exp(f_c) - f_y, and dJ/df_c = p_c - 1
  for c = y and p_c for c != y, i.e. delta = p - onehot(y).

  Args:
    f_NxC: class scores.
    y_N: gold class ids.

  Returns:
    (J_N, delta_NxC).
  """
  lse_N = jax.nn.logsumexp(f_NxC, axis=1)
  onehot_NxC = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=f_NxC.dtype)
  f_y_N = jnp.sum(onehot_NxC * f_NxC, axis=1)
  p_NxC = jnp.exp(f_NxC - lse_N[:, None])
  return lse_N - f_y_N, p_NxC - onehot_NxC


def multiclass_margin(f_NxC, y_N, margin=1.0):
  """Multiclass max-margin  J = max(0, margin + max_{c != y} f_c - f_y)."""
  f_y = jnp.take_along_axis(f_NxC, y_N[:, None], 1)[:, 0]
  is_gold = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=bool)
  f_other = jnp.max(jnp.where(is_gold, -jnp.inf, f_NxC), axis=1)
  return jax.nn.relu(margin + f_other - f_y)


def multiclass_margin_delta(f_NxC, y_N, margin=1.0):
  """Multiclass max-margin J = max(0, margin + max_{c != y} f_c - f_y).

  Deck (max-margin on class scores, research.formulas.losses.multiclass_margin):
  when the hinge is active (t = margin + f_c* - f_y > 0, c* the best wrong
  class), dJ/df = +1 at c*, -1 at the gold class y, 0 elsewhere; when it is
  inactive (t <= 0) dJ/df = 0 exactly. Wrong classes tied for the max share the
  +1 evenly (the subgradient jnp.max's derivative takes).

  Args:
    f_NxC: class scores.
    y_N: gold class ids.
    margin: the margin (1 in the deck).

  Returns:
    (J_N, delta_NxC).
  """
  is_gold_NxC = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=bool)
  f_y_N = jnp.sum(jnp.where(is_gold_NxC, f_NxC, 0.0), axis=1)
  f_wrong_NxC = jnp.where(is_gold_NxC, -jnp.inf, f_NxC)
  f_other_N = jnp.max(f_wrong_NxC, axis=1)
  t_N = margin + f_other_N - f_y_N
  active_N = (t_N > 0).astype(f_NxC.dtype)
  is_max_NxC = (f_wrong_NxC == f_other_N[:, None]) & ~is_gold_NxC
  ties_N = jnp.maximum(jnp.sum(is_max_NxC, axis=1), 1).astype(f_NxC.dtype)
  share_NxC = is_max_NxC.astype(f_NxC.dtype) / ties_N[:, None]
  gold_NxC = is_gold_NxC.astype(f_NxC.dtype)
  return (jnp.maximum(t_N, 0.0), active_N[:, None] * (share_NxC - gold_NxC))


def window_margin(s_N, s_corrupt_NxM, margin=1.0):
  """The deck's window max-margin  J = sum_m max(0, margin - s + s_c,m)."""
  return jnp.sum(jax.nn.relu(margin - s_N[:, None] + s_corrupt_NxM), axis=1)


def window_margin_delta(s_N, s_corrupt_NxM, margin=1.0):
  """The deck's window max-margin J = sum_m max(0, margin - s + s_c,m).

  Deck ("Training with backpropagation", assuming J > 0): each active term
  (margin - s + s_c,m > 0) adds -1 to dJ/ds and +1 to dJ/ds_c,m; an inactive
  term adds exactly 0.

  Args:
    s_N: scores of the true windows.
    s_corrupt_NxM: scores of M corrupt windows per true window.
    margin: the margin (1 in the deck).

  Returns:
    (J_N, ds_N, ds_corrupt_NxM): the loss and dJ/ds, dJ/ds_c per window.
  """
  t_NxM = margin - s_N[:, None] + s_corrupt_NxM
  active_NxM = (t_NxM > 0).astype(s_N.dtype)
  return (
    jnp.sum(jnp.maximum(t_NxM, 0.0), axis=1),
    -jnp.sum(active_NxM, axis=1),
    active_NxM,
  )


def logistic_loss(s_N, y_N):
  """Logistic J = -log sigma(s) if y else -log(1 - sigma(s)), i.e.
  softplus(s) - y s, [N] (the window scorer's twin of `window_margin`)."""
  return jax.nn.softplus(s_N) - y_N * s_N


EMBEDDING_KEYS = ('L', 'L_case', 'L_feat', 'L_char')
BIAS_KEYS = ('b', 'c', 'start', 'end', 'b_char', 'b_dil')


def regularized_keys(params, embeddings=False, biases=False):
  """The parameters the L2 term covers: weight matrices (and the CRF's
  transitions A, the character filters) always; word, casing, feature and
  character vectors if `embeddings`; biases (and the CRF's start/end scores)
  if `biases`."""
  keys = []
  for name in params:
    if name in EMBEDDING_KEYS and not embeddings:
      continue
    if name in BIAS_KEYS and not biases:
      continue
    keys.append(name)
  return tuple(sorted(keys))


def l2_penalty(params, lam, embeddings=False, biases=False):
  """L2  lambda/2 * sum_theta ||theta||^2  over `regularized_keys`."""
  keys = regularized_keys(params, embeddings, biases)
  return 0.5 * lam * sum(jnp.sum(jnp.square(params[k])) for k in keys)


# --- Layers: error signals to parameter and input gradients. -----------------
