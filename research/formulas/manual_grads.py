"""Hand-derived backprop for every formula of the decks.

Each gradient below is written out from the decks' formulas, with no
`jax.grad`; research/formulas/autodiff.py holds the autodiff references they are
compared with and the one comparison helper both checks use
(research/formulas/derivations.py and tests/test_manual_grads.py).

Conventions:

* Batched over N windows with matrices ("matrices are awesome"): the deck's
  per-window column-vector formula dJ/dW = delta x^T, summed over windows, is
  the one matrix product `delta_NxC.T @ x_NxD`; dJ/dx = W^T delta for every
  window at once is `delta_NxC @ W_CxD` (row n is (W^T delta_n)^T).
* `reduce='mean'`: gradients of the mean loss (1/N) sum_n J_n. The error
  signals are scaled by 1/N once, where they are made (dJ/df), so every
  gradient below them is a plain sum; dx_NxD is then the gradient of the
  mean w.r.t. the [N, D] array of window vectors (row n is dJ_n/dx_n / N).
  `reduce='none'`: per-window gradients stacked on a leading N axis (dW[n] =
  delta_n x_n^T, dx[n] = dJ_n/dx_n), what `jax.vmap(jax.grad(J_n))` gives.
* At kinks the subgradient is the one `jax.grad` takes, so that training with
  either gives the same numbers even where ties are common (the softmax model
  starts at W = 0, c = 0, where every class score ties): relu'(0) = 0;
  hardtanh'(+-1) = 1/2 (jnp.clip splits a tie of max/min evenly);
  max(0, t)' = 0 at t = 0; a max over tied wrong classes splits its unit
  evenly among them. Any of these is a valid subgradient.
* Shapes are explicit: no implicit rank promotion (the checks run this code
  under `jax.numpy_rank_promotion('raise')`), and every float follows the
  dtype of its inputs (float32 in training, float64 in the checks).
"""

import itertools

import jax.numpy as jnp

from research.formulas import chars as chars_lib
from research.formulas import dilated
from research.formulas import losses
from research.formulas import model as model_lib

REDUCTIONS = ('mean', 'none')

# --- g'(z), written by hand from z and a = g(z). -----------------------------


def _tanh_grad(z, a):
  """tanh'(z) = 1 - tanh(z)^2 = (1 - a)(1 + a)."""
  del z
  return (1.0 - a) * (1.0 + a)


def _relu_grad(z, a):
  """relu'(z) = 1 if z > 0 else 0 (0 at the kink z = 0)."""
  del a
  return (z > 0).astype(z.dtype)


def _sigmoid_grad(z, a):
  """sigma'(z) = sigma(z) (1 - sigma(z)) = a (1 - a)."""
  del z
  return a * (1.0 - a)


def _hardtanh_grad(z, a):
  """hardtanh'(z) = 1 on (-1, 1), 0 outside, 1/2 at the corners z = +-1."""
  del a
  inside = (jnp.abs(z) < 1).astype(z.dtype)
  corner = (jnp.abs(z) == 1).astype(z.dtype)
  return inside + 0.5 * corner


NONLINEARITY_GRADS = {
  'tanh': _tanh_grad,
  'relu': _relu_grad,
  'sigmoid': _sigmoid_grad,
  'hardtanh': _hardtanh_grad,
}


def _activate(nonlinearity, z):
  """(a, g'(z)): the forward nonlinearity and its hand-written derivative."""
  a = model_lib.NONLINEARITIES[nonlinearity](z)
  return a, NONLINEARITY_GRADS[nonlinearity](z, a)


# --- Objectives: each returns J per window and dJ/d(scores) per window. ------


def check_reduce(reduce):
  if reduce not in REDUCTIONS:
    raise ValueError(f'reduce must be one of {REDUCTIONS}, got {reduce!r}')


def _per_window_weight(delta_NxA, reduce):
  """Scales the top error signal by 1/N for the gradient of the mean."""
  if reduce == 'mean':
    return delta_NxA / delta_NxA.shape[0]
  return delta_NxA


def _outer(delta_NxA, x_NxB, reduce):
  """dJ/dM for a layer M x: sum_n delta_n x_n^T, or per window [N, A, B]."""
  if reduce == 'none':
    return delta_NxA[:, :, None] * x_NxB[:, None, :]
  return delta_NxA.T @ x_NxB


def _bias(delta_NxA, reduce):
  """dJ/dbias = delta: summed over windows, or per window [N, A]."""
  if reduce == 'none':
    return delta_NxA
  return jnp.sum(delta_NxA, axis=0)


def softmax_grads(params, x_NxD, y_N, objective, reduce='mean'):
  """Softmax window classifier f = W x + c: loss and gradients.

  Deck ("Simplest window classifier: softmax", "Updating concatenated word
  vectors"): delta = dJ/df (p - onehot(y) for cross-entropy: the
  objective's `grad`), dJ/dW = delta x^T, dJ/dc = delta, dJ/dx = W^T delta.

  Args:
    params: dict with W [C, D] and c [C] (other keys are ignored).
    x_NxD: window vectors.
    y_N: gold class ids.
    objective: a window-level record of research.formulas.objectives.
    reduce: 'mean' or 'none' (see the module docstring).

  Returns:
    (J_N, {'W', 'c'}, dx_NxD).
  """
  check_reduce(reduce)
  f_NxC, cache = softmax_forward(params, x_NxD)
  J_N, delta_NxC = objective.grad(f_NxC, y_N)
  delta_NxC = _per_window_weight(delta_NxC, reduce)
  return (J_N, *softmax_backward(params, x_NxD, cache, delta_NxC, reduce))


def softmax_forward(params, x_NxD):
  """f = W x + c, and what `softmax_backward` needs (nothing)."""
  return x_NxD @ params['W'].T + params['c'][None, :], ()


def softmax_backward(params, x_NxD, cache, delta_NxC, reduce='mean'):
  """From delta = dJ/df: ({'W': delta x^T, 'c': delta}, dx = W^T delta)."""
  del cache
  grads = {'W': _outer(delta_NxC, x_NxD, reduce), 'c': _bias(delta_NxC, reduce)}
  return grads, delta_NxC @ params['W']


def hidden_grads(params, x_NxD, y_N, nonlinearity, objective, reduce='mean'):
  """One hidden layer f = W g(V x + b) + c: loss and gradients.

  Deck ("A more powerful window classifier", "Computing gradients with
  backprop"): with z = V x + b, a = g(z) and delta = dJ/df,
  dJ/dW = delta a^T, dJ/dc = delta, dJ/da = W^T delta,
  delta_hidden = (W^T delta) * g'(z) (elementwise; g' in
  NONLINEARITY_GRADS), dJ/dV = delta_hidden x^T, dJ/db = delta_hidden,
  dJ/dx = V^T delta_hidden.

  Args:
    params: dict with V [H, D], b [H], W [C, H], c [C].
    x_NxD: window vectors.
    y_N: gold class ids.
    nonlinearity: a key of research.formulas.model.NONLINEARITIES.
    objective: a window-level record of research.formulas.objectives.
    reduce: 'mean' or 'none'.

  Returns:
    (J_N, {'V', 'b', 'W', 'c'}, dx_NxD).
  """
  check_reduce(reduce)
  f_NxC, cache = hidden_forward(params, x_NxD, nonlinearity)
  J_N, delta_NxC = objective.grad(f_NxC, y_N)
  delta_NxC = _per_window_weight(delta_NxC, reduce)
  return (J_N, *hidden_backward(params, x_NxD, cache, delta_NxC, reduce))


def hidden_forward(params, x_NxD, nonlinearity='tanh'):
  """f = W g(V x + b) + c, and (a, g'(z)) for `hidden_backward`."""
  z_NxH = x_NxD @ params['V'].T + params['b'][None, :]
  a_NxH, g_prime_NxH = _activate(nonlinearity, z_NxH)
  return a_NxH @ params['W'].T + params['c'][None, :], (a_NxH, g_prime_NxH)


def hidden_backward(params, x_NxD, cache, delta_NxC, reduce='mean'):
  """`hidden_grads`'s backward pass from delta = dJ/df (already weighted):
  ({'V', 'b', 'W', 'c'}, dx_NxD)."""
  a_NxH, g_prime_NxH = cache
  V_HxD, W_CxH = params['V'], params['W']
  delta_hidden_NxH = (delta_NxC @ W_CxH) * g_prime_NxH
  grads = {
    'V': _outer(delta_hidden_NxH, x_NxD, reduce),
    'b': _bias(delta_hidden_NxH, reduce),
    'W': _outer(delta_NxC, a_NxH, reduce),
    'c': _bias(delta_NxC, reduce),
  }
  return grads, delta_hidden_NxH @ V_HxD


def scores_forward(params, x_NxD, model_cfg, layout=None):
  """Class scores f of `model_cfg.model` and its backward pass's cache
  (layout: the rows' (starts_BxT, mask_BxT), for the dilated model)."""
  if model_cfg.model == 'softmax':
    return softmax_forward(params, x_NxD)
  if model_cfg.model == 'dilated':
    return dilated_forward(params, x_NxD, model_cfg, layout)
  return hidden_forward(params, x_NxD, model_cfg.nonlinearity)


def scores_backward(params, x_NxD, cache, delta_NxC, model_cfg):
  """Gradients (summed over windows) and dx from a weighted dJ/df."""
  if model_cfg.model == 'softmax':
    return softmax_backward(params, x_NxD, cache, delta_NxC)
  if model_cfg.model == 'dilated':
    return dilated_backward(params, x_NxD, cache, delta_NxC)
  return hidden_backward(params, x_NxD, cache, delta_NxC)


def dilated_forward(params, x_NxD, model_cfg, layout):
  """The dilated model (research.formulas.dilated) on N = B T windows:
  a = g(V x + b), h = encode(a) over the rows of `layout` (starts_BxT,
  mask_BxT), f = W h + c; and what `dilated_backward` needs."""
  z_NxH = x_NxD @ params['V'].T + params['b'][None, :]
  a_NxH, g_prime_NxH = _activate(model_cfg.nonlinearity, z_NxH)
  h_NxH, caches = dilated.encode_rows(
    params, a_NxH, layout, model_cfg.block_repeats
  )
  f_NxC = h_NxH @ params['W'].T + params['c'][None, :]
  return f_NxC, (h_NxH, g_prime_NxH, caches)


def dilated_backward(params, x_NxD, cache, delta_NxC):
  """`dilated_forward`'s backward pass from delta = dJ/df (already
  weighted): dJ/dW = delta h^T, dJ/dc = delta, dJ/dh = W^T delta, then
  dilated.encode_backward to dJ/da, delta_hidden = dJ/da * g'(z),
  dJ/dV = delta_hidden x^T, dJ/db = delta_hidden, dx = V^T delta_hidden.
  Returns ({'V', 'b', 'W_dil', 'b_dil', 'W', 'c'}, dx_NxD)."""
  h_NxH, g_prime_NxH, caches = cache
  dh_NxH = delta_NxC @ params['W']
  B, T, _ = caches[0].z.shape
  da_BxTxH, grads = dilated.encode_backward(
    params, caches, dh_NxH.reshape(B, T, -1)
  )
  delta_hidden_NxH = da_BxTxH.reshape(h_NxH.shape) * g_prime_NxH
  grads.update(
    V=_outer(delta_hidden_NxH, x_NxD, 'mean'),
    b=_bias(delta_hidden_NxH, 'mean'),
    W=_outer(delta_NxC, h_NxH, 'mean'),
    c=_bias(delta_NxC, 'mean'),
  )
  return grads, delta_hidden_NxH @ params['V']


def classifier_grads(params, x_NxD, y_N, model_cfg, objective, reduce='mean'):
  """`softmax_grads` or `hidden_grads`, as `model_cfg.model` says."""
  if model_cfg.model == 'softmax':
    return softmax_grads(params, x_NxD, y_N, objective, reduce)
  if model_cfg.model == 'hidden':
    return hidden_grads(
      params, x_NxD, y_N, model_cfg.nonlinearity, objective, reduce
    )
  raise ValueError(f'unknown classifier {model_cfg.model!r}')


def scorer_grads(
  params, x_NxD, x_corrupt_NxMxD, nonlinearity='tanh', margin=1.0, reduce='mean'
):
  """Window scorer s = U . g(W x + b) with the window max-margin.

  Deck ("The max-margin loss", "Training with backpropagation"): with
  J = sum_m max(0, 1 - s + s_c,m), z = W x + b, a = g(z), and, for an active
  term, dJ/ds = -1, dJ/ds_c = +1 (`losses.window_margin_delta`):
  dJ/dU = -a + a_c (summed over active terms); the error signal at the hidden
  layer delta = (dJ/ds) U * g'(z) for the true window and (dJ/ds_c) U *
  g'(z_c) for each corrupt one; dJ/dW = delta x^T + sum_m delta_c,m
  x_c,m^T; dJ/db = delta + sum_m delta_c,m; dJ/dx = W^T delta,
  dJ/dx_c,m = W^T delta_c,m.

  The true window and its M corrupt ones are laid out as P = 1 + M windows
  (slot 0 the true one) so that one matrix product serves them all.

  Args:
    params: dict with W [H, D], b [H], U [H].
    x_NxD: true window vectors.
    x_corrupt_NxMxD: M corrupt window vectors per true window.
    nonlinearity: a key of research.formulas.model.NONLINEARITIES.
    margin: the margin (1 in the deck).
    reduce: 'mean' or 'none'.

  Returns:
    (J_N, {'U', 'W', 'b'}, dx_NxD, dx_corrupt_NxMxD).
  """
  check_reduce(reduce)
  W_HxD, b_H, U_H = params['W'], params['b'], params['U']
  N, M, D = x_corrupt_NxMxD.shape
  H, P = b_H.shape[0], 1 + M
  x_NxPxD = jnp.concatenate([x_NxD[:, None, :], x_corrupt_NxMxD], axis=1)
  x_QxD = x_NxPxD.reshape(N * P, D)  # Q = N P windows, true and corrupt
  z_QxH = x_QxD @ W_HxD.T + b_H[None, :]
  a_QxH, g_prime_QxH = _activate(nonlinearity, z_QxH)
  s_NxP = (a_QxH @ U_H).reshape(N, P)
  J_N, ds_N, ds_corrupt_NxM = losses.window_margin_delta(
    s_NxP[:, 0], s_NxP[:, 1:], margin
  )
  ds_NxP = jnp.concatenate([ds_N[:, None], ds_corrupt_NxM], axis=1)
  ds_NxP = _per_window_weight(ds_NxP, reduce)
  ds_Q = ds_NxP.reshape(N * P)
  delta_QxH = ds_Q[:, None] * U_H[None, :] * g_prime_QxH
  if reduce == 'none':
    delta_NxPxH = delta_QxH.reshape(N, P, H)
    a_NxPxH = a_QxH.reshape(N, P, H)
    grads = {
      'U': jnp.einsum('np,nph->nh', ds_NxP, a_NxPxH),
      'W': jnp.einsum('nph,npd->nhd', delta_NxPxH, x_NxPxD),
      'b': jnp.sum(delta_NxPxH, axis=1),
    }
  else:
    grads = {
      'U': ds_Q @ a_QxH,
      'W': delta_QxH.T @ x_QxD,
      'b': jnp.sum(delta_QxH, axis=0),
    }
  dx_NxPxD = (delta_QxH @ W_HxD).reshape(N, P, D)
  return J_N, grads, dx_NxPxD[:, 0], dx_NxPxD[:, 1:]


# --- From window gradients to rows of L and L_case. --------------------------


def split_window_grad(
  dx_NxD, embed_dim, case_dim, feature_width=0, char_width=0
):
  """Splits dJ/dx into its 2k+1 word-vector and casing-vector gradients.

  Deck ("Updating concatenated word vectors"): x is the concatenation [x_{i-k};
  ...; x_{i+k}] of the window's vectors, so dJ/dx is the concatenation of the
  dJ/dx_j, each a slice of d entries. Here every word contributes [L[w_j];
  L_case[c_j]] (research.formulas.model.concat_window), so slot j of dJ/dx is
  [dJ/dL[w_j]; dJ/dL_case[c_j]] (then the gradients of its feature rows, F*g
  entries, when the words have features).

  Args:
    dx_NxD: window gradients, D = K (embed_dim + case_dim + feature_width).
    embed_dim: d, columns of L.
    case_dim: e, columns of L_case.
    feature_width: F*g, the feature entries of a slot (0: none).
    char_width: H, the character features of a slot (0: none).

  Returns:
    (dE_NxKxd, dcase_NxKxe), then dfeat_NxKx(F*g) when feature_width > 0
    and dchar_NxKxH when char_width > 0: the gradient w.r.t. each word's
    vector, casing vector (features, character features).
  """
  N, D = dx_NxD.shape
  widths = [embed_dim, case_dim]
  widths += [w for w in (feature_width, char_width) if w]
  F = sum(widths)
  if D % F:
    raise ValueError(f'window gradient of size {D} is not K * {F}')
  dx_NxKxF = dx_NxD.reshape(N, D // F, F)
  ends = itertools.accumulate(widths)
  return tuple(
    dx_NxKxF[:, :, end - width : end] for width, end in zip(widths, ends)
  )


def scatter_rows(ids, g, num_rows):
  """Gradient w.r.t. a lookup table from the gradients of its looked-up rows.

  Deck: "the gradient that arrives at the word vectors can simply be split
  up for each word vector" and added to that word's row of L. Row r of the
  result is the sum of g over every position (window, slot) whose id is r:
  a word repeated inside a window (the padding tokens at a sentence edge, a
  repeated "the", and casing ids all the time) or across windows gets the sum
  of all its occurrences, since the loss reads its vector once per
  occurrence. `.at[ids].add` is a scatter-add, which accumulates repeated
  indices; `.at[ids].set` (or numpy's buffered `T[ids] += g`) would keep only
  one occurrence and lose the others. Rows never looked up are zero.

  Args:
    ids: int ids, any shape S (e.g. [N, K] or [N, M, K]).
    g: gradients of the looked-up rows, shape S + [d].
    num_rows: rows of the table.

  Returns:
    The [num_rows, d] gradient of the table.
  """
  return jnp.zeros((num_rows, g.shape[-1]), g.dtype).at[ids].add(g)


def classifier_loss_and_grads(
  params, words_NxK, casing_NxK, y_N, model_cfg, objective
):
  """Mean loss of a classifier on word ids and its gradient w.r.t. params.

  The forward pass gathers x = [L[w_j]; L_case[c_j]]_j
  (research.formulas.model.window_vectors); the backward pass is
  `classifier_grads` followed by `split_window_grad` and `scatter_rows` into L
  and L_case.

  Args:
    params: L, L_case and the classifier's parameters.
    words_NxK: word ids.
    casing_NxK: casing ids.
    y_N: gold class ids.
    model_cfg: research.formulas.model.ModelConfig ('softmax' or 'hidden').
    objective: a window-level record of research.formulas.objectives.

  Returns:
    (mean loss, gradients w.r.t. every key of params).
  """
  L_Vxd, L_case_Sxe = params['L'], params['L_case']
  x_NxD = model_lib.window_vectors(L_Vxd, L_case_Sxe, words_NxK, casing_NxK)
  J_N, grads, dx_NxD = classifier_grads(
    params, x_NxD, y_N, model_cfg, objective, 'mean'
  )
  dE_NxKxd, dcase_NxKxe = split_window_grad(
    dx_NxD, L_Vxd.shape[1], L_case_Sxe.shape[1]
  )
  grads['L'] = scatter_rows(words_NxK, dE_NxKxd, L_Vxd.shape[0])
  grads['L_case'] = scatter_rows(casing_NxK, dcase_NxKxe, L_case_Sxe.shape[0])
  return jnp.mean(J_N), grads


def scorer_loss_and_grads(
  params,
  words_NxK,
  casing_NxK,
  corrupt_words_NxMxK,
  corrupt_casing_NxMxK,
  nonlinearity='tanh',
  margin=1.0,
):
  """Mean window max-margin of the scorer on word ids, and its gradients.

  `scorer_grads` on the gathered true and corrupt windows; both windows'
  gradients are split into word and casing vectors and scattered into L
  and L_case (a word in the true and a corrupt window gets both). The two
  lookups are scattered one after the other and added, so that where the
  true and corrupt contributions cancel (every word but the center one when
  both windows share their active units) they cancel exactly.

  Args:
    params: L, L_case, W, b, U.
    words_NxK, casing_NxK: the true windows.
    corrupt_words_NxMxK, corrupt_casing_NxMxK: their corrupt windows (see
      research.training.window_scorer.corrupt_windows).
    nonlinearity: a key of research.formulas.model.NONLINEARITIES.
    margin: the margin.

  Returns:
    (mean loss, gradients w.r.t. every key of params).
  """
  L_Vxd, L_case_Sxe = params['L'], params['L_case']
  N, M, K = corrupt_words_NxMxK.shape
  x_NxD = model_lib.window_vectors(L_Vxd, L_case_Sxe, words_NxK, casing_NxK)
  x_corrupt_NxMxD = model_lib.window_vectors(
    L_Vxd,
    L_case_Sxe,
    corrupt_words_NxMxK.reshape(N * M, K),
    corrupt_casing_NxMxK.reshape(N * M, K),
  ).reshape(N, M, -1)
  J_N, grads, dx_NxD, dx_corrupt_NxMxD = scorer_grads(
    params, x_NxD, x_corrupt_NxMxD, nonlinearity, margin, 'mean'
  )
  d, e = L_Vxd.shape[1], L_case_Sxe.shape[1]
  dE_NxKxd, dcase_NxKxe = split_window_grad(dx_NxD, d, e)
  dE_NMxKxd, dcase_NMxKxe = split_window_grad(
    dx_corrupt_NxMxD.reshape(N * M, -1), d, e
  )
  grads['L'] = scatter_rows(words_NxK, dE_NxKxd, L_Vxd.shape[0]) + scatter_rows(
    corrupt_words_NxMxK.reshape(-1, K), dE_NMxKxd, L_Vxd.shape[0]
  )
  grads['L_case'] = scatter_rows(
    casing_NxK, dcase_NxKxe, L_case_Sxe.shape[0]
  ) + scatter_rows(
    corrupt_casing_NxMxK.reshape(-1, K), dcase_NMxKxe, L_case_Sxe.shape[0]
  )
  return jnp.mean(J_N), grads


# --- L2 and the training objective. ------------------------------------------


def l2_value_and_grads(params, lam, embeddings=False, biases=False):
  """L2 term lambda/2 sum ||theta||^2 and its gradient lambda theta.

  Over research.formulas.losses.regularized_keys(params, embeddings, biases):
  the weight matrices always, L and L_case if `embeddings`, b and c if `biases`;
  the gradient of every other key is exactly zero.

  Args:
    params: dict of arrays.
    lam: lambda.
    embeddings: whether L and L_case are covered.
    biases: whether b and c are covered.

  Returns:
    (value, gradients w.r.t. every key of params).
  """
  keys = losses.regularized_keys(params, embeddings, biases)
  value = sum(0.5 * lam * jnp.sum(params[k] * params[k]) for k in keys)
  grads = {
    k: lam * v if k in keys else jnp.zeros_like(v) for k, v in params.items()
  }
  return value, grads


def objective_grads(
  params, words_NxK, casing_NxK, y_N, l2, model_cfg, cfg, objective
):
  """research.training.classifier.training_objective (mean data loss + L2)
  and its gradients.

  Args:
    params: all parameters of a classifier, L included. words_NxK, casing_NxK,
    y_N: a batch. l2: lambda. model_cfg: research.formulas.model.ModelConfig (no
    dropout). cfg: research.training.classifier.TrainConfig: the L2
    convention (l2_embeddings, l2_biases) and freeze_embeddings. objective:
    a window-level record of research.formulas.objectives.

  Returns:
    (value, gradients w.r.t. the trainable parameters: every key of params,
    less L when cfg.freeze_embeddings).
  """
  loss, grads = classifier_loss_and_grads(
    params, words_NxK, casing_NxK, y_N, model_cfg, objective
  )
  reg, reg_grads = l2_value_and_grads(
    params, l2, cfg.l2_embeddings, cfg.l2_biases
  )
  trainable = [k for k in params if not (k == 'L' and cfg.freeze_embeddings)]
  return loss + reg, {k: grads[k] + reg_grads[k] for k in trainable}


def batch_grads(dense, E_BxKxd, casing_BxK, y_B, model_cfg, objective):
  """The hand-derived (grad="manual") step of
  research.training.classifier.batch_grads.

  The contract of its autodiff branch, from hand-derived gradients: the mean
  data loss over the batch, its gradient w.r.t. every key of `dense` (L_case and
  the classifier's V, b, W, c or W, c; a key the loss does not read gets zeros)
  and w.r.t. the gathered word vectors E = L[words]. The L2 term's gradient is
  added by the optimizer (research.training.optim.add_l2). Jit-able; no dropout.

  Args:
    dense: dict with L_case and the classifier's parameters.
    E_BxKxd: word vectors of the batch's windows.
    casing_BxK: casing ids.
    y_B: gold class ids.
    model_cfg: research.formulas.model.ModelConfig.
    objective: a window-level record of research.formulas.objectives.

  Returns:
    (mean loss, g_dense, g_E_BxKxd).
  """
  if model_cfg.dropout > 0:
    raise ValueError('the manual gradients have no dropout; use dropout=0')
  L_case_Sxe = dense['L_case']
  x_BxD = model_lib.concat_window(E_BxKxd, L_case_Sxe[casing_BxK])
  J_B, grads, dx_BxD = classifier_grads(
    dense, x_BxD, y_B, model_cfg, objective, 'mean'
  )
  dE_BxKxd, dcase_BxKxe = split_window_grad(
    dx_BxD, E_BxKxd.shape[-1], L_case_Sxe.shape[1]
  )
  grads['L_case'] = scatter_rows(casing_BxK, dcase_BxKxe, L_case_Sxe.shape[0])
  g_dense = {
    k: grads[k] if k in grads else jnp.zeros_like(v) for k, v in dense.items()
  }
  return jnp.mean(J_B), g_dense, dE_BxKxd


def sentence_batch_grads(
  dense,
  E_MxKxd,
  casing_MxK,
  feat_MxKxFxg,
  tags_BxT,
  mask_BxT,
  starts_BxT,
  model_cfg,
  objective,
  chars=None,
):
  """The hand-derived (grad="manual") step of
  research.training.sequence.batch_grads.

  The M = B*T windows of B packed rows (research.formulas.crf's layout) give
  class scores f [B, T, C]; the loss is the objective summed over the rows'
  sentences (a sentence-level one of research.formulas.crf, or a window-level
  one over the words) divided by n, the number of words. Its error signal dJ/df
  comes from the objective's `grad` in research.formulas.objectives
  (forward-backward, the cost-augmented Viterbi path, or a window-level
  one's), zero at padding, scaled by 1/n; the window model's
  backward pass (`scores_backward`, `split_window_grad`) carries it to every
  parameter, and from the slots' character features through the character CNN
  (research.formulas.chars: `slot_features_backward`, then `char_backward`). No
  dropout.

  Args:
    dense: L_case, the classifier's parameters, and A, start, end for a
      sentence-level objective (and L_feat, which is not read: its rows are
      given).
    E_MxKxd: word vectors of the windows. casing_MxK: casing ids. feat_MxKxFxg:
    the windows' feature rows of L_feat, or None. tags_BxT, mask_BxT,
    starts_BxT: gold tags and the layout. model_cfg:
    research.formulas.model.ModelConfig. objective: a record of
    research.formulas.objectives. chars: the rows'
    research.training.sequence.CharRows (spellings, their rows of
      L_char, which slots hold a word), or None.

  Returns:
    (loss, g_dense, g_E_MxKxd, g_feat_MxKxFxg or None, the gradient of
    chars.E or None).
  """
  from research.formulas import crf  # noqa: PLC0415 (crf does not import this)

  if model_cfg.dropout > 0:
    raise ValueError('the manual gradients have no dropout; use dropout=0')
  B, T = tags_BxT.shape
  L_case_Sxe = dense['L_case']
  slots_MxKxH = None
  if chars is not None:
    h_BxTxH, char_cache = chars_lib.char_features_of_rows(
      chars.E, dense['W_char'], dense['b_char'], chars.ids
    )
    slots_MxKxH = chars_lib.slot_features(h_BxTxH, chars.is_word)
    slots_MxKxH = slots_MxKxH.reshape(B * T, *slots_MxKxH.shape[2:])
  x_MxD = model_lib.concat_window(
    E_MxKxd, L_case_Sxe[casing_MxK], feat_MxKxFxg, slots_MxKxH
  )
  f_MxC, cache = scores_forward(dense, x_MxD, model_cfg, (starts_BxT, mask_BxT))
  C, dtype = f_MxC.shape[1], f_MxC.dtype
  n = jnp.maximum(jnp.sum(mask_BxT), 1).astype(dtype)
  grads = {}
  if objective.sentence_level:
    trans = crf.Transitions(dense['A'], dense['start'], dense['end'])
    J, delta_BxTxC, g_trans = objective.grad(
      f_MxC.reshape(B, T, C), tags_BxT, mask_BxT, starts_BxT, trans
    )
    delta_MxC = delta_BxTxC.reshape(B * T, C) / n
    grads.update(A=g_trans.A / n, start=g_trans.start / n, end=g_trans.end / n)
  else:
    J, delta_MxC = objective.grad(f_MxC, tags_BxT.reshape(-1))
    m_M = mask_BxT.reshape(-1).astype(dtype)
    J, delta_MxC = J * m_M, delta_MxC * m_M[:, None] / n
  window_grads, dx_MxD = scores_backward(
    dense, x_MxD, cache, delta_MxC, model_cfg
  )
  grads.update(window_grads)
  width = 0 if feat_MxKxFxg is None else feat_MxKxFxg[0, 0].size
  char_width = 0 if chars is None else slots_MxKxH.shape[-1]
  parts = split_window_grad(
    dx_MxD, E_MxKxd.shape[-1], L_case_Sxe.shape[1], width, char_width
  )
  grads['L_case'] = scatter_rows(casing_MxK, parts[1], L_case_Sxe.shape[0])
  g_feat = g_char = None
  if width:
    g_feat = parts[2].reshape(feat_MxKxFxg.shape)
  if char_width:
    dslots = parts[-1].reshape(B, T, *parts[-1].shape[1:])
    dh_BxTxH = chars_lib.slot_features_backward(dslots, chars.is_word)
    char_grads = chars_lib.char_backward(
      dense['W_char'], chars.ids, char_cache, dh_BxTxH
    )
    grads.update(W_char=char_grads.W_char, b_char=char_grads.b_char)
    g_char = char_grads.rows
  g_dense = {
    k: grads[k] if k in grads else jnp.zeros_like(v) for k, v in dense.items()
  }
  return jnp.sum(J) / n, g_dense, parts[0], g_feat, g_char
