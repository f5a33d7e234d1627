"""Objectives of the decks, one value per window, and the L2 penalty.

The caller reduces (mean over the batch) and adds `l2_penalty` once.
"""

import jax
import jax.numpy as jnp


def cross_entropy(f_NxC, y_N):
  """Cross-entropy J = -log softmax(f)_y (= KL(p_gold || q), H(p_gold) = 0)."""
  return -jnp.take_along_axis(jax.nn.log_softmax(f_NxC), y_N[:, None], 1)[:, 0]


def multiclass_margin(f_NxC, y_N, margin=1.0):
  """Multiclass max-margin  J = max(0, margin + max_{c != y} f_c - f_y)."""
  f_y = jnp.take_along_axis(f_NxC, y_N[:, None], 1)[:, 0]
  is_gold = jax.nn.one_hot(y_N, f_NxC.shape[1], dtype=bool)
  f_other = jnp.max(jnp.where(is_gold, -jnp.inf, f_NxC), axis=1)
  return jax.nn.relu(margin + f_other - f_y)


def window_margin(s_N, s_corrupt_NxM, margin=1.0):
  """The deck's window max-margin  J = sum_m max(0, margin - s + s_c,m)."""
  return jnp.sum(jax.nn.relu(margin - s_N[:, None] + s_corrupt_NxM), axis=1)


OBJECTIVES = {
  'xent': cross_entropy,
  'max_margin': multiclass_margin,
}

EMBEDDING_KEYS = ('L', 'L_case', 'L_feat')
BIAS_KEYS = ('b', 'c', 'start', 'end')


def regularized_keys(params, embeddings=False, biases=False):
  """The parameters the L2 term covers: weight matrices (and the CRF's
  transitions A) always; word, casing and feature vectors if `embeddings`;
  biases (and the CRF's start/end scores) if `biases`."""
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
