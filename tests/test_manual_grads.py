"""Tests for research.formulas.manual_grads: the hand-derived backprop equals
autodiff.

Float64 throughout (but the training test, float32 like training), random
shapes and values, every parameter leaf compared by `autodiff.compare` at
rtol 1e-10; the manual side runs with implicit rank promotion refused.
Compiling is what costs here, so each suite of comparisons is traced into
one program (a module fixture) and the parameterized tests read their rows.
The wrong-derivation suite shows that the same comparison does fail.
"""

import dataclasses
import functools
import zlib

import jax
from jax import test_util as jtu
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import vocab as vocab_lib
from research.formulas import autodiff
from research.formulas import derivation_problems
from research.formulas import derivations
from research.formulas import losses
from research.formulas import manual_grads as mg
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import engine
from research.training import window_scorer
from tests.conftest import by_name
from tests.conftest import fit_windows

RTOL = 1e-10
CLASSIFIERS = dict(derivation_problems.classifiers())  # tag -> ModelConfig
OBJECTIVES = objectives.names('window')
# The dilated model reads rows of sentences: test_dilated.py checks it.
WINDOW_MODELS = tuple(m for m in model_lib.MODELS if m != 'dilated')
NONLINEARITIES = tuple(model_lib.NONLINEARITIES)
L2_FROZEN = [
  (embeddings, biases, frozen)
  for embeddings in (False, True)
  for biases in (False, True)
  for frozen in (False, True)
]


def _rng(*parts):
  """A generator seeded by the name of what it is for."""
  return np.random.default_rng(zlib.crc32('/'.join(map(str, parts)).encode()))


def _random_shapes(rng):
  return derivation_problems.Shapes(
    windows=int(rng.integers(1, 6)),
    half_width=int(rng.integers(0, 3)),
    embed_dim=int(rng.integers(1, 4)),
    case_dim=int(rng.integers(0, 3)),
    hidden=int(rng.integers(1, 5)),
    classes=int(rng.integers(2, 5)),
    vocab=int(rng.integers(2, 7)),
    casings=int(rng.integers(1, 4)),
    corrupt=int(rng.integers(1, 4)),
  )


def _l2_name(embeddings, biases, frozen):
  vectors = 'frozen' if frozen else 'tuned'
  return f'l2_vectors={embeddings}/l2_biases={biases}/{vectors}'


def _train_cfg(objective, embeddings, biases, frozen):
  return classifier.TrainConfig(
    objective=objective,
    l2_embeddings=embeddings,
    l2_biases=biases,
    freeze_embeddings=frozen,
  )


def _conventions(t):
  """(research.training.classifier.objective's, the hook's) L2 convention x
  frozen/tuned vectors for the t-th classifier, with every objective.

  Through research.training.classifier.objective: the four with frozen vectors
  (classifiers 0-3), then L2 on everything with tuned vectors (classifier 4);
  through the --grad=manual hook (which returns dJ/dE only for tuned vectors,
  and no L2: the optimizer adds it, so its convention only names the row): the
  four with tuned vectors. However many objectives the registry holds, each
  convention meets every one of them."""
  tuned, frozen = L2_FROZEN[::2], L2_FROZEN[1::2]
  objective = frozen[t] if t < len(frozen) else (True, True, False)
  return objective, tuned[t % len(tuned)]


def _suite_plan():
  """Every comparison of the correct derivations, on random shapes."""
  plan = []
  pairs = [(tag, objective) for tag in CLASSIFIERS for objective in OBJECTIVES]
  for tag, objective in pairs:
    model_cfg = CLASSIFIERS[tag]
    rng = _rng(tag, objective)
    problem = derivation_problems.sample_classifier(
      rng, _random_shapes(rng), model_cfg, objectives.get(objective)
    )
    name = f'{tag}/{objective}'
    # Per-window gradients (against vmap(grad)) for one objective of each
    # classifier, xent and max-margin in turn; batched ones for every pair.
    per_window = OBJECTIVES.index(objective) == list(CLASSIFIERS).index(
      tag
    ) % len(OBJECTIVES)
    reduces = mg.REDUCTIONS if per_window else ('mean',)
    plan.append(
      (
        name,
        by_name(derivations.classifier_cases),
        (problem,),
        dict(model_cfg=model_cfg, objective=objective, reduces=reduces),
        False,
      )
    )
    lam = float(rng.uniform(0.1, 1.0))
    cases = (derivations.objective_case, derivations.hook_case)
    t = list(CLASSIFIERS).index(tag)
    for fn, convention in zip(cases, _conventions(t)):
      full = fn is derivations.objective_case
      step = 'objective' if full else 'train.batch_grads'
      plan.append(
        (
          f'{name}/{step}/{_l2_name(*convention)}',
          by_name(fn),
          (problem, lam) if full else (problem,),
          dict(
            model_cfg=model_cfg,
            cfg=_train_cfg(objective, *convention),
            objective=objective,
          ),
          False,
        )
      )
  mean_only = dict(reduces=('mean',))
  for tag, model_cfg in CLASSIFIERS.items():
    rng = _rng(tag, 'inactive')
    problem = derivation_problems.sample_classifier(
      rng,
      _random_shapes(rng),
      model_cfg,
      objectives.get('max_margin'),
      inactive=True,
    )
    plan.append(
      (
        f'{tag}/max_margin/inactive',
        by_name(derivations.classifier_cases),
        (problem,),
        dict(model_cfg=model_cfg, objective='max_margin', **mean_only),
        True,
      )
    )
  rng = _rng('scorer')
  shapes = _random_shapes(rng)  # one shape: corrupt_windows compiles once
  for g in NONLINEARITIES:
    problem = derivation_problems.sample_scorer(rng, shapes, g)
    plan.append(
      (
        f'scorer/{g}',
        derivations.scorer_cases,
        (problem,),
        dict(nonlinearity=g),
        False,
      )
    )
    problem = derivation_problems.sample_scorer(rng, shapes, g, inactive=True)
    plan.append(
      (
        f'scorer/{g}/inactive',
        derivations.scorer_cases,
        (problem,),
        dict(nonlinearity=g, **mean_only),
        True,
      )
    )
  lam = float(rng.uniform(0.1, 1.0))
  for model in WINDOW_MODELS + ('scorer',):
    if model == 'scorer':
      params = derivation_problems.sample_scorer(rng, shapes, 'tanh')[0]
    else:
      params = derivation_problems.sample_classifier(
        rng, shapes, model_lib.ModelConfig(model), objectives.get('xent')
      )[0]
    for embeddings, biases in derivations.L2_CONVENTIONS.values():
      plan.append(
        (
          f'l2/{model}/embeddings={embeddings}/biases={biases}',
          derivations.l2_case,
          (params, lam),
          dict(embeddings=embeddings, biases=biases),
          False,
        )
      )
  return plan


def _rows(plan, rtol=RTOL):
  """{formula: [Diff]} of a plan, computed by one compiled program."""
  rows = {}
  outs = derivations.run_plan(plan)
  for (formula, _, _, _, exact_zero), out in zip(plan, outs):
    cases = out if isinstance(out, dict) else {'': out}
    for suffix, (manual, reference) in cases.items():
      rows[formula + suffix] = autodiff.compare(
        manual, reference, rtol, exact_zero
      )
  return rows


def _failures(rows):
  return [
    f'{formula} {d.name}: max_abs {d.max_abs:.1e} max_rel '
    f'{d.max_rel:.1e} {d.note}'
    for formula, diffs in rows
    for d in diffs
    if not d.ok
  ]


@pytest.fixture(scope='module')
def suite():
  with jax.enable_x64(True):
    return _rows(_suite_plan())


def _select(suite, prefix):
  rows = [
    (f, d)
    for f, d in suite.items()
    if f == prefix or f.startswith(prefix + '/')
  ]
  assert rows, f'no comparison named {prefix}'
  return rows


@pytest.mark.parametrize('objective', OBJECTIVES)
@pytest.mark.parametrize('tag', list(CLASSIFIERS))
def test_classifier_grads_equal_autodiff(suite, tag, objective):
  """Batched, per-window (vmap(grad)), from word ids, the full objective
  and the --grad=manual hook (manual_grads.batch_grads; see
  `_conventions`)."""
  rows = [
    r for r in _select(suite, f'{tag}/{objective}') if '/inactive' not in r[0]
  ]
  names = {f for f, _ in rows}
  assert sum('/objective/' in f for f in names) == 1
  assert sum('/train.batch_grads/' in f for f in names) == 1
  assert not _failures(rows)
  leaves = {d.name for _, diffs in rows for d in diffs}
  weights = {'V', 'b', 'W', 'c'} if tag.startswith('hidden') else {'W', 'c'}
  assert weights | {'x', 'L', 'L_case', 'E', 'J', 'J_mean'} <= leaves


def test_per_window_grads_equal_vmap_grad(suite):
  """Per-window manual gradients against jax.vmap(jax.grad(per-window
  loss)): every classifier (one objective each, both objectives in all) and
  every scorer."""
  rows = [(f, d) for f, d in suite.items() if f.endswith('/per_window')]
  formulas = {f[: -len('/per_window')] for f, _ in rows}
  pairs = [f.rsplit('/', 1) for f in formulas if not f.startswith('scorer/')]
  assert {tag for tag, _ in pairs} == set(CLASSIFIERS)
  assert {objective for _, objective in pairs} == set(OBJECTIVES)
  assert {f'scorer/{g}' for g in NONLINEARITIES} <= formulas
  assert not _failures(rows)


@pytest.mark.parametrize(
  'convention', L2_FROZEN, ids=[_l2_name(*c) for c in L2_FROZEN]
)
def test_l2_conventions_and_frozen_vectors(suite, convention):
  """research.training.classifier.objective and the hook under each L2
  convention."""
  rows = [
    (f, d) for f, d in suite.items() if f.endswith('/' + _l2_name(*convention))
  ]
  assert len(rows) >= 2
  assert {f.split('/')[-5] for f, _ in rows} == set(OBJECTIVES)
  assert not _failures(rows)


@pytest.mark.parametrize('tag', list(CLASSIFIERS))
def test_inactive_multiclass_margin_gives_exact_zeros(suite, tag):
  rows = _select(suite, f'{tag}/max_margin/inactive')
  assert not _failures(rows)


@pytest.mark.parametrize('g', NONLINEARITIES)
def test_window_scorer_grads_equal_autodiff(suite, g):
  rows = [r for r in _select(suite, f'scorer/{g}') if 'inactive' not in r[0]]
  assert not _failures(rows)
  leaves = {d.name for _, diffs in rows for d in diffs}
  assert {'U', 'W', 'b', 'x', 'x_corrupt', 'L', 'L_case'} <= leaves


@pytest.mark.parametrize('g', NONLINEARITIES)
def test_inactive_window_margin_gives_exact_zeros(suite, g):
  assert not _failures(_select(suite, f'scorer/{g}/inactive'))


@pytest.mark.parametrize('model', WINDOW_MODELS + ('scorer',))
def test_l2_grads_equal_autodiff(suite, model):
  rows = _select(suite, f'l2/{model}')
  assert len(rows) == len(derivations.L2_CONVENTIONS)
  assert not _failures(rows)


# --- Numerical check of the autodiff side. ----------------------------------


def _check_grads_problems():
  """{formula: (loss fn(*args), args)} for jax.test_util.check_grads, away
  from every kink: every classifier (the softmax with both objectives, the
  hidden ones with each in turn) and the scorer with a smooth and a kinked
  g."""
  shapes = derivation_problems.Shapes(
    windows=3,
    half_width=1,
    embed_dim=2,
    case_dim=1,
    hidden=3,
    classes=3,
    vocab=5,
    casings=3,
    corrupt=2,
  )
  out = {}
  for t, (tag, model_cfg) in enumerate(CLASSIFIERS.items()):
    names = OBJECTIVES if t == 0 else [OBJECTIVES[t % 2]]
    for objective in names:
      rng = _rng('check_grads', tag, objective)
      p, words, casing, y = derivation_problems.sample_classifier(
        rng, shapes, model_cfg, objectives.get(objective), kink_tol=1e-2
      )
      weights = {k: v for k, v in p.items() if k not in ('L', 'L_case')}
      x = jnp.asarray(
        derivation_problems.numpy_window_vectors(p, words, casing)
      )
      loss = functools.partial(
        _mean_classifier_loss, y=y, model_cfg=model_cfg, objective=objective
      )
      out[f'{tag}/{objective}'] = (loss, (weights, x))
  for g in ('tanh', 'relu'):
    rng = _rng('check_grads', 'scorer', g)
    p, words, casing, cwords, ccasing = derivation_problems.sample_scorer(
      rng, shapes, g, kink_tol=1e-2
    )
    N, M, K = cwords.shape
    x = jnp.asarray(derivation_problems.numpy_window_vectors(p, words, casing))
    xc = jnp.asarray(
      derivation_problems.numpy_window_vectors(
        p, cwords.reshape(N * M, K), ccasing.reshape(N * M, K)
      )
    )
    xc = xc.reshape(N, M, -1)
    weights = {k: p[k] for k in ('U', 'W', 'b')}
    loss = functools.partial(_mean_scorer_loss, nonlinearity=g)
    out[f'scorer/{g}'] = (loss, (weights, x, xc))
  return out


def _mean_classifier_loss(weights, x, *, y, model_cfg, objective):
  return jnp.mean(
    autodiff.classifier_window_losses(
      weights, x, y, model_cfg, objectives.get(objective)
    )
  )


def _mean_scorer_loss(weights, x, xc, *, nonlinearity):
  return jnp.mean(autodiff.scorer_window_losses(weights, x, xc, nonlinearity))


def test_autodiff_side_passes_finite_differences():
  """jax.test_util.check_grads (reverse mode, against central differences)
  on the losses the manual gradients are compared with, away from every
  kink (check_grads steps 1e-4). The losses are one function returning a
  dict, so that one compiled program serves them all."""
  with jax.enable_x64(True):
    problems = _check_grads_problems()
    losses_fn = jax.jit(
      lambda args: {
        name: fn(*a) for (name, (fn, _)), a in zip(problems.items(), args)
      }
    )
    args = [a for _, a in problems.values()]
    jtu.check_grads(losses_fn, (args,), order=1, modes=['rev'])


# --- The comparison can fail: deliberately wrong derivations. ---------------


def _no_g_prime(z, a):
  del a
  return jnp.ones_like(z)


def _transposed_dV(hidden_grads):
  """dJ/dV written x delta_hidden^T instead of delta_hidden x^T."""

  def wrong(*args, **kwargs):
    J, grads, dx = hidden_grads(*args, **kwargs)
    return J, dict(grads, V=jnp.swapaxes(grads['V'], -1, -2)), dx

  return wrong


def _margin_sign_flipped(delta_fn):
  def wrong(f, y, margin=1.0):
    J, delta = delta_fn(f, y, margin)
    return J, -delta

  return wrong


def _margin_sign_flipped_in_window(delta_fn):
  def wrong(s, s_corrupt, margin=1.0):
    J, ds, ds_corrupt = delta_fn(s, s_corrupt, margin)
    return J, -ds, -ds_corrupt

  return wrong


def _scatter_without_accumulation(ids, g, num_rows):
  return jnp.zeros((num_rows, g.shape[-1]), g.dtype).at[ids].set(g)


# name -> (patch(m) putting the wrong derivation in place, the case builder
#          of research.formulas.derivations, the problem, {suffix: the
#          leaves that must fail}; every other leaf must pass).
WRONG = {
  'missing_g_prime': (
    lambda m: m.setitem(mg.NONLINEARITY_GRADS, 'tanh', _no_g_prime),
    derivations.classifier_cases,
    'hidden/tanh/xent',
    {'': {'V', 'b', 'x', 'L', 'L_case'}, '/per_window': {'V', 'b', 'x'}},
  ),
  'transposed_dV_square': (
    lambda m: m.setattr(mg, 'hidden_grads', _transposed_dV(mg.hidden_grads)),
    derivations.classifier_cases,
    'hidden/sigmoid/xent/square',
    {'': {'V'}, '/per_window': {'V'}},
  ),
  'transposed_dV_shape': (
    lambda m: m.setattr(mg, 'hidden_grads', _transposed_dV(mg.hidden_grads)),
    derivations.classifier_cases,
    'hidden/relu/xent',
    {'': {'V'}},
  ),
  'margin_sign': (
    lambda m: m.setitem(
      objectives.REGISTRY,
      'max_margin',
      dataclasses.replace(
        objectives.REGISTRY['max_margin'],
        grad=_margin_sign_flipped(losses.multiclass_margin_delta),
      ),
    ),
    derivations.classifier_cases,
    'softmax/max_margin',
    {'': {'W', 'c', 'x', 'L', 'L_case'}, '/per_window': {'W', 'c', 'x'}},
  ),
  'window_margin_sign': (
    lambda m: m.setattr(
      losses,
      'window_margin_delta',
      _margin_sign_flipped_in_window(losses.window_margin_delta),
    ),
    derivations.scorer_cases,
    'scorer/tanh',
    {
      '': {'U', 'W', 'b', 'x', 'x_corrupt', 'L', 'L_case'},
      '/per_window': {'U', 'W', 'b', 'x', 'x_corrupt'},
    },
  ),
  'no_accumulation': (
    lambda m: m.setattr(mg, 'scatter_rows', _scatter_without_accumulation),
    derivations.classifier_cases,
    'hidden/tanh/xent',
    {'': {'L', 'L_case'}},
  ),
}

_WRONG_SHAPES = derivation_problems.Shapes(
  windows=4,
  half_width=1,
  embed_dim=2,
  case_dim=1,
  hidden=5,
  classes=3,
  vocab=4,
  casings=2,
  corrupt=2,
)


def _wrong_problem(name):
  rng = _rng('wrong', name)
  shapes = _WRONG_SHAPES
  if name.endswith('/square'):  # H == D, so a transposed dV fits
    name = name[: -len('/square')]
    shapes = shapes._replace(hidden=shapes.input_dim)
  if name.startswith('scorer/'):
    g = name.split('/')[1]
    return (derivation_problems.sample_scorer(rng, shapes, g),), dict(
      nonlinearity=g
    )
  tag, objective = name.rsplit('/', 1)
  problem = derivation_problems.sample_classifier(
    rng, shapes, CLASSIFIERS[tag], objectives.get(objective)
  )
  return (problem,), dict(model_cfg=CLASSIFIERS[tag], objective=objective)


@pytest.fixture(scope='module')
def wrong_suite():
  """{variant: {suffix: [Diff]}}: each wrong derivation traced, with its
  patch in place, into one program, and compared as the real ones are."""
  plan, patches = [], []
  for name, (patch, fn, problem_name, expected) in WRONG.items():
    with jax.enable_x64(True):
      args, static = _wrong_problem(problem_name)
    if '/per_window' not in expected:
      static['reduces'] = ('mean',)
    fn = by_name(fn) if 'objective' in static else fn
    plan.append((name, fn, args, static, False))
    patches.append(patch)

  def program(all_args):
    out = []
    for (_, fn, _, static, _), patch, args in zip(plan, patches, all_args):
      with pytest.MonkeyPatch.context() as m:
        patch(m)
        out.append(fn(*args, **static))
    return out

  with jax.enable_x64(True):
    outs = derivations.jit_call(program, [args for _, _, args, _, _ in plan])
  return {
    name: {
      suffix: autodiff.compare(manual, reference, RTOL)
      for suffix, (manual, reference) in out.items()
    }
    for (name, *_), out in zip(plan, outs)
  }


@pytest.mark.parametrize('name', list(WRONG))
def test_wrong_derivation_is_reported(wrong_suite, name):
  expected = WRONG[name][3]
  assert set(wrong_suite[name]) == set(expected)
  for suffix, diffs in wrong_suite[name].items():
    failed = {d.name for d in diffs if not d.ok}
    assert failed == expected[suffix], (suffix, diffs)
  if name == 'transposed_dV_shape':
    notes = [d.note for d in wrong_suite[name][''] if d.name == 'V']
    assert notes[0].startswith('shape')


def test_compare_reports_missing_and_nonfinite_leaves():
  a = {'W': np.ones((2, 3)), 'b': np.zeros(2)}
  nan = {'W': np.ones((2, 3)) * np.nan}
  rows = {d.name: d for d in autodiff.compare(nan, a)}
  assert not rows['W'].ok and rows['W'].note == 'not finite'
  assert not rows['b'].ok and 'missing' in rows['b'].note
  assert all(d.ok for d in autodiff.compare(a, a))
  assert not autodiff.compare(
    {'b': np.full(2, 1e-300)}, {'b': np.zeros(2)}, exact_zero=True
  )[0].ok


# --- Pieces and conventions. -------------------------------------------------


def test_scatter_rows_accumulates_repeated_words():
  ids_NxK = jnp.array([[2, 2, 0], [2, 1, 1]])
  g_NxKxd = jnp.arange(12.0).reshape(2, 3, 2)
  table = mg.scatter_rows(ids_NxK, g_NxKxd, 4)
  expected = np.zeros((4, 2))
  np.add.at(expected, np.asarray(ids_NxK), np.asarray(g_NxKxd))
  np.testing.assert_array_equal(table, expected)
  np.testing.assert_array_equal(
    table[2], g_NxKxd[0, 0] + g_NxKxd[0, 1] + g_NxKxd[1, 0]
  )
  np.testing.assert_array_equal(table[3], [0.0, 0.0])


def test_split_window_grad_follows_concat_window():
  E_NxKxd = jnp.arange(2 * 3 * 4.0).reshape(2, 3, 4)
  C_NxKxe = -jnp.arange(2 * 3 * 2.0).reshape(2, 3, 2)
  x_NxD = model_lib.concat_window(E_NxKxd, C_NxKxe)
  dE, dC = mg.split_window_grad(x_NxD, 4, 2)
  np.testing.assert_array_equal(dE, E_NxKxd)
  np.testing.assert_array_equal(dC, C_NxKxe)
  with pytest.raises(ValueError):
    mg.split_window_grad(x_NxD, 4, 3)


def test_corrupt_windows_replace_only_the_center_word():
  words = jnp.array([[5, 6, 7, 8, 9], [0, 0, 3, 1, 1]], jnp.int32)
  casing = jnp.array([[1, 2, 3, 4, 5], [0, 0, 2, 0, 0]], jnp.int32)
  corrupt = jax.jit(
    window_scorer.corrupt_windows,
    static_argnames=('num_corrupt', 'vocab_size', 'minval'),
  )
  cw, cc = jax.device_get(
    corrupt(jax.random.key(7), words, casing, 6, 50, minval=3)
  )
  words, casing = np.asarray(words), np.asarray(casing)
  assert cw.shape == cc.shape == (2, 6, 5)
  np.testing.assert_array_equal(
    cw[:, :, [0, 1, 3, 4]], np.repeat(words[:, None, [0, 1, 3, 4]], 6, 1)
  )
  np.testing.assert_array_equal(cc, np.repeat(casing[:, None], 6, 1))
  assert np.all((cw[:, :, 2] >= 3) & (cw[:, :, 2] < 50))
  again, _ = corrupt(jax.random.key(7), words, casing, 6, 50, minval=3)
  np.testing.assert_array_equal(cw, again)
  other, _ = corrupt(jax.random.key(8), words, casing, 6, 50, minval=3)
  assert np.any(other != cw)


def _kink_pairs():
  """{what: (manual, autodiff)} at exact kinks (one compiled program)."""
  pairs = {}
  z = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
  for name, g in model_lib.NONLINEARITIES.items():
    pairs[name] = (
      mg.NONLINEARITY_GRADS[name](z, g(z)),
      jax.vmap(jax.grad(g))(z),
    )
  # Every class score tied (the softmax model at W = 0, c = 0), and a hinge
  # exactly at zero (1 + 0 - 1 = 0).
  f = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -3.0]])
  y = jnp.array([2, 1])
  pairs['multiclass_margin'] = (
    losses.multiclass_margin_delta(f, y)[1],
    jax.grad(lambda f: losses.multiclass_margin(f, y).sum())(f),
  )
  s, s_c = jnp.array([1.0, 0.5]), jnp.array([[0.0, 0.5], [0.5, -0.5]])
  _, ds, ds_c = losses.window_margin_delta(s, s_c)
  pairs['window_margin'] = (
    (ds, ds_c),
    jax.grad(lambda s, s_c: losses.window_margin(s, s_c).sum(), (0, 1))(s, s_c),
  )
  return pairs


def test_subgradients_at_kinks_are_those_of_autodiff():
  """Exact kinks, where any subgradient would do: the manual one is the one
  jax.grad takes (relu'(0) = 0, hardtanh'(+-1) = 1/2, max(0, t)' = 0 at
  t = 0, tied wrong classes share the +1), so training with either agrees
  even at W = 0."""
  with jax.enable_x64(True):
    pairs = derivations.jit_call(_kink_pairs)
  for name, (manual, reference) in pairs.items():
    if name in ('tanh', 'sigmoid'):  # smooth: exact up to rounding
      np.testing.assert_allclose(manual, reference, rtol=1e-14, err_msg=name)
    else:
      jax.tree.map(
        functools.partial(np.testing.assert_array_equal, err_msg=name),
        manual,
        reference,
      )
  np.testing.assert_array_equal(pairs['hardtanh'][0], [0, 0.5, 1, 1, 1, 0.5, 0])
  np.testing.assert_array_equal(
    pairs['multiclass_margin'][0], [[1 / 3, 1 / 3, -1, 1 / 3], [0, 0, 0, 0]]
  )


# --- Training with the manual gradients. -------------------------------------


def test_fit_with_manual_grads_equals_autodiff():
  """A few float32 training steps (hidden tanh, SGD, L2 on everything) give
  the same parameters with either gradient: with full float32 matrix
  products (not a GPU's default TF32)."""
  rng = np.random.default_rng(0)
  n, k, vocab, num_classes = 96, 1, 11, 4
  train = vocab_lib.Windows(
    rng.integers(0, vocab, (n, 2 * k + 1)).astype(np.int32),
    rng.integers(0, 8, (n, 2 * k + 1)).astype(np.int32),
    rng.integers(0, num_classes, n).astype(np.int32),
    np.zeros(n, np.int32),
  )
  model_cfg = model_lib.ModelConfig('hidden', 'tanh', window=k, hidden=8)
  cfg = classifier.TrainConfig(
    optimizer='sgd',
    batch_size=16,
    sparse=False,
    l2_embeddings=True,
    l2_biases=True,
  )
  params = model_lib.init_params(
    jax.random.key(0),
    model_cfg,
    vocab_size=vocab,
    num_classes=num_classes,
    embed_dim=4,
    case_dim=3,
  )
  trained = {}
  for grad in ('autodiff', 'manual'):
    with jax.default_matmul_precision('float32'):
      stacked, _, stats = fit_windows(
        engine.stack([params]),
        train,
        engine.Hyper([0.1], [1e-3]),
        [0],
        model_cfg,
        cfg._replace(grad=grad),
        epochs=2,
        log=lambda _: None,
      )
    trained[grad] = engine.unstack(stacked, 0)
    assert stats['steps'] == 2 * (n // 16)
  rows = autodiff.compare(trained['manual'], trained['autodiff'], rtol=1e-5)
  assert all(d.ok for d in rows), rows
  moved = autodiff.compare(params, trained['autodiff'], rtol=1e-3)
  assert not any(d.ok for d in moved)  # training did change every leaf


def test_batch_grads_refuses_dropout():
  model_cfg = model_lib.ModelConfig('softmax', dropout=0.5)
  dense = {
    'L_case': jnp.zeros((2, 1)),
    'W': jnp.zeros((3, 3)),
    'c': jnp.zeros(3),
  }
  with pytest.raises(ValueError, match='dropout'):
    mg.batch_grads(
      dense,
      jnp.zeros((1, 1, 2)),
      jnp.zeros((1, 1), jnp.int32),
      jnp.zeros(1, jnp.int32),
      model_cfg,
      objectives.get('xent'),
    )
