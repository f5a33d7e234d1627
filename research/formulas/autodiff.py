"""Autodiff references for the hand-derived gradients, and their comparison.

`research/formulas/derivations.py` (`./launch.sh gradcheck`) and
`tests/test_manual_grads.py` compare every
function of research/formulas/manual_grads.py with `jax.grad` (or
`jax.vmap(jax.grad(...))` per window) through `compare`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.formulas import losses
from research.formulas import manual_grads
from research.formulas import model as model_lib


def classifier_window_losses(params, x_NxD, y_N, model_cfg, objective):
  """Per-window loss of a classifier from research.formulas.model and the
  window-level objective's loss (research.formulas.objectives; the autodiff
  reference of `classifier_grads`)."""
  f_NxC = model_lib.class_scores(params, x_NxD, model_cfg)
  return objective.loss(f_NxC, y_N)


def scorer_window_losses(
  params, x_NxD, x_corrupt_NxMxD, nonlinearity='tanh', margin=1.0
):
  """Per-window max-margin of research.formulas.model.window_score with
  research.formulas.losses.window_margin (the autodiff reference of
  `scorer_grads`)."""
  N, M, D = x_corrupt_NxMxD.shape
  s_N = model_lib.window_score(params, x_NxD, nonlinearity)
  s_corrupt_NxM = model_lib.window_score(
    params, x_corrupt_NxMxD.reshape(N * M, D), nonlinearity
  ).reshape(N, M)
  return losses.window_margin(s_N, s_corrupt_NxM, margin)


def scorer_id_losses(
  params,
  words_NxK,
  casing_NxK,
  corrupt_words_NxMxK,
  corrupt_casing_NxMxK,
  nonlinearity='tanh',
  margin=1.0,
):
  """`scorer_window_losses` on windows gathered from L and L_case."""
  N, M, K = corrupt_words_NxMxK.shape
  x_NxD = model_lib.window_vectors(
    params['L'], params['L_case'], words_NxK, casing_NxK
  )
  x_corrupt_NxMxD = model_lib.window_vectors(
    params['L'],
    params['L_case'],
    corrupt_words_NxMxK.reshape(N * M, K),
    corrupt_casing_NxMxK.reshape(N * M, K),
  ).reshape(N, M, -1)
  return scorer_window_losses(
    params, x_NxD, x_corrupt_NxMxD, nonlinearity, margin
  )


def autodiff_grads(window_losses, params, inputs, others=(), reduce='mean'):
  """Autodiff gradients of a per-window loss, as the manual ones lay them out.

  Args:
    window_losses: fn(params, *inputs, *others) -> [N] losses.
    params: dict of arrays.
    inputs: per-window float arrays to differentiate (e.g. (x_NxD,)).
    others: per-window arrays not differentiated (e.g. (y_N,)).
    reduce: 'mean': `jax.grad` of the mean loss; 'none':
      `jax.vmap(jax.grad(per-window loss))`, one gradient per window.

  Returns:
    (J_N, params' gradients, tuple of the inputs' gradients).
  """
  manual_grads.check_reduce(reduce)
  J_N = window_losses(params, *inputs, *others)
  n = len(inputs)
  if reduce == 'mean':

    def mean_loss(params, *inputs):
      return jnp.mean(window_losses(params, *inputs, *others))

    grads = jax.grad(mean_loss, argnums=tuple(range(n + 1)))(params, *inputs)
  else:

    def one_window(params, *args):
      batch = [a[None] for a in args]
      return window_losses(params, *batch)[0]

    grad_fn = jax.grad(one_window, argnums=tuple(range(n + 1)))
    in_axes = (None,) + (0,) * (n + len(others))
    grads = jax.vmap(grad_fn, in_axes)(params, *inputs, *others)
  return J_N, grads[0], tuple(grads[1:])


class Diff(NamedTuple):
  """One compared leaf: differences of a manual gradient from autodiff."""

  name: str
  max_abs: float  # max |autodiff - manual|
  max_rel: float  # max_abs / max(max |autodiff|, tiny)
  ok: bool
  note: str = ''  # why it failed beyond the tolerance (shape, missing)


def compare(manual, reference, rtol=1e-10, exact_zero=False):
  """Compares two flat dicts of gradients leaf by leaf, in float64.

  A leaf passes when max|a - m| / max(max|a|, tiny) <= rtol (a the
  reference, m the manual gradient, tiny the smallest normal float64), both
  are finite and of one shape; with `exact_zero`, when both are exactly zero
  everywhere. A key on one side only fails.

  Args:
    manual: name -> array.
    reference: name -> array.
    rtol: the largest relative difference that passes.
    exact_zero: require exact zeros (an inactive hinge).

  Returns:
    A list of Diff, one per key of either dict, in the reference's order.
  """
  tiny = np.finfo(np.float64).tiny
  rows = []
  names = list(reference) + [k for k in manual if k not in reference]
  for name in names:
    if name not in manual or name not in reference:
      side = 'manual' if name not in manual else 'reference'
      rows.append(Diff(name, np.inf, np.inf, False, f'missing in {side}'))
      continue
    m = np.asarray(manual[name], np.float64)
    a = np.asarray(reference[name], np.float64)
    if m.shape != a.shape:
      rows.append(
        Diff(name, np.inf, np.inf, False, f'shape {m.shape} != {a.shape}')
      )
      continue
    max_abs = float(np.max(np.abs(a - m), initial=0.0))
    max_rel = max_abs / max(float(np.max(np.abs(a), initial=0.0)), tiny)
    finite = bool(np.all(np.isfinite(m)) and np.all(np.isfinite(a)))
    if exact_zero:
      ok = finite and not np.any(m) and not np.any(a)
      note = '' if ok else 'not exactly zero'
    else:
      ok = finite and max_rel <= rtol
      note = '' if finite else 'not finite'
    rows.append(Diff(name, max_abs, max_rel, ok, note))
  return rows
