r"""Hand-derived gradients against autodiff: one row per formula and parameter.

Every formula of research/manual_grads.py is evaluated in float64 on small
random problems (a repeated word inside a window; max-margin cases kept away
from the hinge and from ties, with both active and inactive windows) and
compared, leaf by leaf, with `jax.grad` of research.model and research.losses
(`research.autodiff`). The rows of `check_all`:

  softmax/OBJ, hidden/G/OBJ       W, c (V, b), x, L, L_case, J (the losses)
  .../per_window                  the same per window, against
                                  jax.vmap(jax.grad(per-window loss))
  scorer/G/window_margin          U, W, b, x, x_corrupt, L, L_case, J
  .../inactive                    every hinge inactive: gradients and
                                  losses must be exactly 0
  l2/MODEL/CONVENTION             lambda theta on research.losses'
                                  regularized_keys, 0 elsewhere
  objective/MODEL/OBJ/VECTORS     research.classifier.objective (data + L2,
                                  word vectors fine-tuned or frozen)
  batch_grads/MODEL/OBJ           manual_grads.batch_grads against the
                                  autodiff branch of
                                  research.classifier.batch_grads, E included
  train.batch_grads/MODEL/OBJ     the training step's gradients,
                                  research.classifier.batch_grads:
                                  grad='manual' against 'autodiff', with L2

Each row holds the max absolute and relative difference (relative:
max|a - m| / max(max|a|, tiny), a autodiff, m manual); it passes when the
relative one is <= rtol (`format_row` prints it). The shapes are `Shapes`,
fixed and small; the corrupt windows of the scorer come from
research.window_scorer.corrupt_windows (any id drawn, minval=0).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research import autodiff
from research import classifier
from research import losses
from research import manual_grads as mg
from research import model as model_lib
from research import window_scorer

KINK_TOL = 1e-3  # least distance of a sampled problem from any kink
MAX_TRIES = 500

# Each check runs once on tiny arrays: compile fast rather than well (these
# XLA options cut the CPU compile time about threefold).
FAST_COMPILE = {
  'xla_backend_optimization_level': 0,
  'xla_llvm_disable_expensive_passes': True,
  'xla_cpu_use_fusion_emitters': False,
}


class Shapes(NamedTuple):
  """Sizes of a random problem."""

  windows: int = 6  # N
  half_width: int = 2  # k: K = 2k+1 words a window
  embed_dim: int = 3  # d
  case_dim: int = 2  # e
  hidden: int = 4  # H
  classes: int = 5  # C
  vocab: int = 7  # rows of L (few, so words repeat)
  casings: int = 4  # rows of L_case
  corrupt: int = 3  # M corrupt windows per true window

  @property
  def input_dim(self):
    return (2 * self.half_width + 1) * (self.embed_dim + self.case_dim)


def classifiers():
  """(tag, ModelConfig) of every classifier: softmax, hidden x g."""
  out = [('softmax', model_lib.ModelConfig('softmax'))]
  for g in model_lib.NONLINEARITIES:
    out.append((f'hidden/{g}', model_lib.ModelConfig('hidden', g)))
  return out


def _normal(rng, shape, scale=1.0):
  return scale * rng.standard_normal(shape)


def _ids(rng, shapes):
  """Word and casing ids [N, K]; window 0 repeats its first word and casing."""
  K = 2 * shapes.half_width + 1
  words = rng.integers(0, shapes.vocab, (shapes.windows, K), dtype=np.int32)
  casing = rng.integers(0, shapes.casings, (shapes.windows, K), dtype=np.int32)
  if K > 1:
    words[0, 1], casing[0, 1] = words[0, 0], casing[0, 0]
  return words, casing


# The samplers look at pre-activations and scores only to stay away from
# kinks: a numpy forward pass (no compiling per shape) is all they need.
_NUMPY_NONLINEARITIES = {
  'tanh': np.tanh,
  'relu': lambda z: np.maximum(z, 0.0),
  'sigmoid': lambda z: 1.0 / (1.0 + np.exp(-z)),
  'hardtanh': lambda z: np.clip(z, -1.0, 1.0),
}


def numpy_window_vectors(p, words, casing):
  """research.model.window_vectors in numpy (no compiling per shape)."""
  p = {k: np.asarray(v) for k, v in p.items()}
  both = np.concatenate([p['L'][words], p['L_case'][casing]], axis=-1)
  return both.reshape(words.shape[0], -1)


def _nonlinearity_kinks(nonlinearity, z):
  """Distance of the pre-activations from the kinks of g (inf if smooth)."""
  if nonlinearity == 'relu':
    return float(np.min(np.abs(z)))
  if nonlinearity == 'hardtanh':
    return float(np.min(np.abs(np.abs(z) - 1.0)))
  return np.inf


def _margin_kinks(f, y):
  """(distance from the hinge and from ties, hinge arguments t_N)."""
  N = f.shape[0]
  f_y = f[np.arange(N), y]
  wrong = np.sort(np.where(np.eye(f.shape[1], dtype=bool)[y], -np.inf, f))
  t = 1.0 + wrong[:, -1] - f_y
  dist = np.abs(t)
  if f.shape[1] > 2:
    dist = np.minimum(dist, wrong[:, -1] - wrong[:, -2])
  return float(np.min(dist)), t


def _as_jax(*trees):
  return jax.tree.map(jnp.asarray, trees)


_corrupt_windows = jax.jit(
  window_scorer.corrupt_windows,
  static_argnames=('num_corrupt', 'vocab_size', 'minval'),
)


def sample_classifier(
  rng, shapes, model_cfg, objective, *, inactive=False, kink_tol=KINK_TOL
):
  """A random classifier problem (params, words, casing, y).

  Values are float64 under jax_enable_x64. With the max-margin objective the
  hinges are kept kink_tol away from zero and from ties, and (N > 1) some
  windows are active and some not; with `inactive`, the gold class is each
  window's best and the scores are scaled until every hinge is inactive.
  Pre-activations stay kink_tol away from the kinks of relu and hardtanh.
  """
  d, e, H, C = shapes.embed_dim, shapes.case_dim, shapes.hidden, shapes.classes
  D = shapes.input_dim
  for _ in range(MAX_TRIES):
    p = {
      'L': _normal(rng, (shapes.vocab, d)),
      'L_case': _normal(rng, (shapes.casings, e)),
    }
    if model_cfg.model == 'softmax':
      p['W'] = _normal(rng, (C, D), 2.0 / np.sqrt(D))
      p['c'] = _normal(rng, (C,))
    else:
      p['V'] = _normal(rng, (H, D), 1.5 / np.sqrt(D))
      p['b'] = _normal(rng, (H,), 0.5)
      p['W'] = _normal(rng, (C, H), 2.0 / np.sqrt(H))
      p['c'] = _normal(rng, (C,))
    words, casing = _ids(rng, shapes)
    y = rng.integers(0, C, shapes.windows, dtype=np.int32)
    a = numpy_window_vectors(p, words, casing)
    dist = np.inf
    if model_cfg.model == 'hidden':
      z = a @ p['V'].T + p['b']
      dist = _nonlinearity_kinks(model_cfg.nonlinearity, z)
      a = _NUMPY_NONLINEARITIES[model_cfg.nonlinearity](z)
    f = a @ p['W'].T + p['c']
    if inactive:
      y = np.argmax(f, axis=1).astype(np.int32)
      top2 = np.sort(f, axis=1)[:, -2:]
      gap = float(np.min(top2[:, 1] - top2[:, 0]))
      if gap < kink_tol or dist < kink_tol:
        continue
      p['W'], p['c'] = p['W'] * (2.0 / gap), p['c'] * (2.0 / gap)
      return _as_jax(p, words, casing, y)
    if objective == 'max_margin':
      margin_dist, t = _margin_kinks(f, y)
      dist = min(dist, margin_dist)
      if shapes.windows > 1 and np.sum(t > 0) in (0, shapes.windows):
        continue
    if dist >= kink_tol:
      return _as_jax(p, words, casing, y)
  raise RuntimeError('no random classifier problem away from the kinks')


def sample_scorer(
  rng, shapes, nonlinearity, *, inactive=False, kink_tol=KINK_TOL
):
  """A random window-scorer problem.

  Returns (params, words, casing, corrupt_words, corrupt_casing). The corrupt
  windows come from window_scorer.corrupt_windows (key from `rng`, any id
  drawn, the casing kept). Hinge
  arguments 1 - s + s_c stay kink_tol away from 0 with some terms active
  and some not; with `inactive`, each window is swapped with its best
  scoring corrupt one if that scores higher and U is scaled until every term
  is inactive.
  """
  d, e, H = shapes.embed_dim, shapes.case_dim, shapes.hidden
  D, M, N = shapes.input_dim, shapes.corrupt, shapes.windows
  K = 2 * shapes.half_width + 1
  g = _NUMPY_NONLINEARITIES[nonlinearity]
  for _ in range(MAX_TRIES):
    p = {
      'L': _normal(rng, (shapes.vocab, d)),
      'L_case': _normal(rng, (shapes.casings, e)),
      'W': _normal(rng, (H, D), 1.5 / np.sqrt(D)),
      'b': _normal(rng, (H,), 0.5),
      'U': _normal(rng, (H,), 3.0 / np.sqrt(H)),
    }
    words, casing = _ids(rng, shapes)
    key = jax.random.key(int(rng.integers(2**31)))
    cwords, ccasing = jax.device_get(
      _corrupt_windows(key, words, casing, M, shapes.vocab, minval=0)
    )
    all_words = np.concatenate([words[:, None], cwords], 1).reshape(-1, K)
    all_casing = np.concatenate([casing[:, None], ccasing], 1).reshape(-1, K)
    z = numpy_window_vectors(p, all_words, all_casing) @ p['W'].T + p['b']
    dist = _nonlinearity_kinks(nonlinearity, z)
    s = (g(z) @ p['U']).reshape(N, 1 + M)
    if inactive:
      order = np.argsort(-s, axis=1)
      gap = float(
        np.min(s[np.arange(N), order[:, 0]] - s[np.arange(N), order[:, 1]])
      )
      if gap < kink_tol or dist < kink_tol:
        continue
      w = np.take_along_axis(
        all_words.reshape(N, 1 + M, K), order[:, :, None], 1
      )
      c = np.take_along_axis(
        all_casing.reshape(N, 1 + M, K), order[:, :, None], 1
      )
      p['U'] = p['U'] * (2.0 / gap)
      return _as_jax(p, w[:, 0], c[:, 0], w[:, 1:], c[:, 1:])
    t = 1.0 - s[:, :1] + s[:, 1:]
    dist = min(dist, float(np.min(np.abs(t))))
    if t.size > 1 and np.sum(t > 0) in (0, t.size):
      continue
    if dist >= kink_tol:
      return _as_jax(p, words, casing, cwords, ccasing)
  raise RuntimeError('no random scorer problem away from the kinks')


def _sub(params, keys):
  return {k: params[k] for k in keys}


def _strict():
  """The manual side runs with implicit rank promotion refused."""
  return jax.numpy_rank_promotion('raise')


def jit_call(fn, *args, **static):
  """fn(*args, **static) as one compiled program, traced afresh each call
  (so a changed module function is never served from an earlier trace)."""
  lowered = jax.jit(functools.partial(fn, **static)).lower(*args)
  try:
    compiled = lowered.compile(FAST_COMPILE)
  except Exception:
    compiled = lowered.compile()  # an XLA without these options
  return compiled(*args)


def classifier_cases(problem, model_cfg, objective, reduces=mg.REDUCTIONS):
  """{suffix: (manual, reference)} for one classifier and objective.

  '' (reduce 'mean'): gradients of the mean loss w.r.t. the weights, x, L
  and L_case, and the losses J (per window) and J_mean; '/per_window'
  (reduce 'none'): per-window gradients against
  jax.vmap(jax.grad(per-window loss)).
  """
  p, words, casing, y = problem
  x = model_lib.window_vectors(p['L'], p['L_case'], words, casing)
  weights = _sub(p, [k for k in p if k not in losses.EMBEDDING_KEYS])
  window_losses = functools.partial(
    autodiff.classifier_window_losses, model_cfg=model_cfg, objective=objective
  )
  cases = {}
  for reduce in reduces:
    with _strict():
      J, grads, dx = mg.classifier_grads(p, x, y, model_cfg, objective, reduce)
    J_ref, grads_ref, (dx_ref,) = autodiff.autodiff_grads(
      window_losses, weights, (x,), (y,), reduce
    )
    manual = dict(grads, x=dx, J=J)
    reference = dict(grads_ref, x=dx_ref, J=J_ref)
    if reduce == 'mean':
      with _strict():
        loss, ids_grads = mg.classifier_loss_and_grads(
          p, words, casing, y, model_cfg, objective
        )
      ids_ref = jax.grad(
        lambda p: classifier.window_losses(
          p, p['L'][words], casing, y, model_cfg, objective
        ).mean()
      )(p)
      manual.update(L=ids_grads['L'], L_case=ids_grads['L_case'])
      reference.update(L=ids_ref['L'], L_case=ids_ref['L_case'])
      manual['J_mean'], reference['J_mean'] = loss, jnp.mean(J_ref)
    cases['' if reduce == 'mean' else '/per_window'] = (manual, reference)
  return cases


def scorer_cases(problem, nonlinearity, reduces=mg.REDUCTIONS):
  """{suffix: (manual, reference)} for the window scorer (as above, with
  x_corrupt the gradient w.r.t. the corrupt windows)."""
  p, words, casing, cwords, ccasing = problem
  N, M, K = cwords.shape
  x = model_lib.window_vectors(p['L'], p['L_case'], words, casing)
  xc = model_lib.window_vectors(
    p['L'], p['L_case'], cwords.reshape(-1, K), ccasing.reshape(-1, K)
  ).reshape(N, M, -1)
  weights = _sub(p, ('U', 'W', 'b'))
  window_losses = functools.partial(
    autodiff.scorer_window_losses, nonlinearity=nonlinearity
  )
  cases = {}
  for reduce in reduces:
    with _strict():
      J, grads, dx, dxc = mg.scorer_grads(p, x, xc, nonlinearity, 1.0, reduce)
    J_ref, grads_ref, (dx_ref, dxc_ref) = autodiff.autodiff_grads(
      window_losses, weights, (x, xc), (), reduce
    )
    manual = dict(grads, x=dx, x_corrupt=dxc, J=J)
    reference = dict(grads_ref, x=dx_ref, x_corrupt=dxc_ref, J=J_ref)
    if reduce == 'mean':
      with _strict():
        loss, ids_grads = mg.scorer_loss_and_grads(
          p, words, casing, cwords, ccasing, nonlinearity
        )
      ids_ref = jax.grad(
        lambda p: autodiff.scorer_id_losses(
          p, words, casing, cwords, ccasing, nonlinearity
        ).mean()
      )(p)
      manual.update(L=ids_grads['L'], L_case=ids_grads['L_case'])
      reference.update(L=ids_ref['L'], L_case=ids_ref['L_case'])
      manual['J_mean'], reference['J_mean'] = loss, jnp.mean(J_ref)
    cases['' if reduce == 'mean' else '/per_window'] = (manual, reference)
  return cases


L2_CONVENTIONS = {
  'weights': (False, False),
  'weights+vectors': (True, False),
  'weights+biases': (False, True),
  'all': (True, True),
}


def l2_case(params, lam, embeddings, biases):
  """(manual, reference) of the L2 term's gradient (and value, 'value')."""
  with _strict():
    value, grads = mg.l2_value_and_grads(params, lam, embeddings, biases)
  ref_value, ref = jax.value_and_grad(losses.l2_penalty)(
    params, lam, embeddings, biases
  )
  return dict(grads, value=value), dict(ref, value=ref_value)


def objective_case(problem, l2, model_cfg, cfg):
  """(manual, reference) of research.classifier.objective's gradient w.r.t. the
  trainable parameters (L left out when cfg.freeze_embeddings)."""
  p, words, casing, y = problem
  with _strict():
    value, grads = mg.objective_grads(p, words, casing, y, l2, model_cfg, cfg)
  ref_value, ref = jax.value_and_grad(classifier.objective)(
    p, words, casing, y, l2, model_cfg, cfg
  )
  if cfg.freeze_embeddings:
    del ref['L']
  return dict(grads, value=value), dict(ref, value=ref_value)


def batch_grads_case(problem, model_cfg, objective):
  """(manual, reference): manual_grads.batch_grads against the autodiff
  branch of research.classifier.batch_grads (no L2)."""
  p, words, casing, y = problem
  dense = _sub(p, [k for k in p if k != 'L'])
  E = p['L'][words]
  with _strict():
    loss, g_dense, g_E = mg.batch_grads(
      dense, E, casing, y, model_cfg, objective
    )
  cfg = classifier.TrainConfig(objective=objective, grad='autodiff')
  ref_loss, ref_dense, ref_E = classifier.batch_grads(
    dense, E, casing, y, 0.0, model_cfg, cfg, None
  )
  return (
    dict(g_dense, E=g_E, J_mean=loss),
    dict(ref_dense, E=ref_E, J_mean=ref_loss),
  )


def hook_case(problem, l2, model_cfg, cfg):
  """(manual, reference): research.classifier.batch_grads with
  grad='manual' against grad='autodiff', L2 (added by the caller) included;
  E only when the word vectors are fine-tuned (autodiff gives None when
  frozen)."""
  p, words, casing, y = problem
  dense = _sub(p, [k for k in p if k != 'L'])
  E = p['L'][words]
  with _strict():
    loss, g_dense, g_E = classifier.batch_grads(
      dense, E, casing, y, l2, model_cfg, cfg._replace(grad='manual'), None
    )
  ref_loss, ref_dense, ref_E = classifier.batch_grads(
    dense, E, casing, y, l2, model_cfg, cfg._replace(grad='autodiff'), None
  )
  manual, reference = (
    dict(g_dense, J_mean=loss),
    dict(ref_dense, J_mean=ref_loss),
  )
  if ref_E is not None:
    manual['E'], reference['E'] = g_E, ref_E
  return manual, reference


def make_plan(rng, shapes):
  """The checks of `check_all`, on problems drawn from rng.

  Args:
    rng: a numpy Generator.
    shapes: the Shapes of the problems.

  Returns:
    [(formula, case fn, its array args, its static kwargs, exact_zero)]; a
    case fn returns (manual, reference) or {suffix: (manual, reference)}.
  """
  plan = []
  for tag, model_cfg in classifiers():
    for objective in losses.OBJECTIVES:
      problem = sample_classifier(rng, shapes, model_cfg, objective)
      plan.append(
        (
          f'{tag}/{objective}',
          classifier_cases,
          (problem,),
          dict(model_cfg=model_cfg, objective=objective),
          False,
        )
      )
    problem = sample_classifier(
      rng, shapes, model_cfg, 'max_margin', inactive=True
    )
    plan.append(
      (
        f'{tag}/max_margin/inactive',
        classifier_cases,
        (problem,),
        dict(model_cfg=model_cfg, objective='max_margin'),
        True,
      )
    )
  for g in model_lib.NONLINEARITIES:
    problem = sample_scorer(rng, shapes, g)
    plan.append(
      (
        f'scorer/{g}/window_margin',
        scorer_cases,
        (problem,),
        dict(nonlinearity=g),
        False,
      )
    )
    problem = sample_scorer(rng, shapes, g, inactive=True)
    plan.append(
      (
        f'scorer/{g}/window_margin/inactive',
        scorer_cases,
        (problem,),
        dict(nonlinearity=g),
        True,
      )
    )
  lam = float(rng.uniform(0.1, 1.0))
  for model in model_lib.MODELS + ('scorer',):
    model_cfg = model_lib.ModelConfig(model)
    if model == 'scorer':
      params = sample_scorer(rng, shapes, 'tanh')[0]
    else:
      params = sample_classifier(rng, shapes, model_cfg, 'xent')[0]
    for name, (embeddings, biases) in L2_CONVENTIONS.items():
      plan.append(
        (
          f'l2/{model}/{name}',
          l2_case,
          (params, lam),
          dict(embeddings=embeddings, biases=biases),
          False,
        )
      )
  for tag, model_cfg in classifiers()[:2]:
    for objective in losses.OBJECTIVES:
      problem = sample_classifier(rng, shapes, model_cfg, objective)
      for frozen in (False, True):
        cfg = classifier.TrainConfig(
          objective=objective,
          l2_embeddings=True,
          l2_biases=True,
          freeze_embeddings=frozen,
        )
        vectors = 'frozen' if frozen else 'tuned'
        plan.append(
          (
            f'objective/{tag}/{objective}/{vectors}',
            objective_case,
            (problem, lam),
            dict(model_cfg=model_cfg, cfg=cfg),
            False,
          )
        )
  for tag, model_cfg in classifiers():
    for objective in losses.OBJECTIVES:
      problem = sample_classifier(rng, shapes, model_cfg, objective)
      plan.append(
        (
          f'batch_grads/{tag}/{objective}',
          batch_grads_case,
          (problem,),
          dict(model_cfg=model_cfg, objective=objective),
          False,
        )
      )
      cfg = classifier.TrainConfig(
        objective=objective, l2_embeddings=True, l2_biases=True
      )
      plan.append(
        (
          f'train.batch_grads/{tag}/{objective}',
          hook_case,
          (problem, lam),
          dict(model_cfg=model_cfg, cfg=cfg),
          False,
        )
      )
  return plan


def run_plan(plan):
  """Every case of the plan, computed by one compiled program."""

  def program(args):
    return [fn(*a, **static) for (_, fn, _, static, _), a in zip(plan, args)]

  return jit_call(program, [args for _, _, args, _, _ in plan])


def check_all(seed=0, rtol=1e-10, shapes=None):
  """Every check, in float64 (enabled here, for this call only).

  Args:
    seed: seed of the random problems.
    rtol: the largest relative difference that passes.
    shapes: the Shapes of the problems (default Shapes()).

  Returns:
    The rows [(formula, autodiff.Diff)], one per formula and leaf.
  """
  with jax.enable_x64(True):
    plan = make_plan(np.random.default_rng(seed), shapes or Shapes())
    rows = []
    for (formula, _, _, _, exact_zero), out in zip(plan, run_plan(plan)):
      cases = out if isinstance(out, dict) else {'': out}
      for suffix, (manual, reference) in cases.items():
        for diff in autodiff.compare(manual, reference, rtol, exact_zero):
          rows.append((formula + suffix, diff))
  return rows


def format_row(formula, diff):
  """One printed line: formula, leaf, max_abs, max_rel, PASS or FAIL."""
  status = 'PASS' if diff.ok else 'FAIL'
  note = f'  ({diff.note})' if diff.note else ''
  return (
    f'{formula:<46} {diff.name:<9} max_abs {diff.max_abs:.1e} '
    f'max_rel {diff.max_rel:.1e} {status}{note}'
  )
