"""The classifier through the engine: sparse row updates, stacked
configurations, losses, end-to-end learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.data import vocab as vocab_lib
from research.formulas import losses
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import engine
from research.training import facade as training
from research.training import optim
from tests.conftest import bit_identical_backend
from tests.conftest import fit_windows

XENT = objectives.get('xent')

V, K, C, N = 40, 5, 4, 96


def toy_windows(seed=0, n=N, vocab=V):
  rng = np.random.default_rng(seed)
  words = rng.integers(0, vocab // 2, (n, K)).astype(np.int32)  # repeats
  words[:, 0] = words[:, 1]  # a word repeated inside every window
  return vocab_lib.Windows(
    words,
    rng.integers(0, 8, (n, K)).astype(np.int32),
    rng.integers(0, C, n).astype(np.int32),
    np.arange(n, dtype=np.int32),
  )


def init(seed=0, model='hidden', hidden=16):
  cfg = model_lib.ModelConfig(model=model, hidden=hidden)
  return cfg, model_lib.init_params(
    jax.random.key(seed), cfg, vocab_size=V, num_classes=C, embed_dim=6
  )


def run(params, cfg, model_cfg, hyper, epochs=2, seed=0, windows=None):
  out, _, _ = fit_windows(
    engine.stack([params]),
    windows or toy_windows(),
    engine.Hyper([hyper.lr], [hyper.l2]),
    [seed],
    model_cfg,
    cfg,
    epochs=epochs,
    log=lambda _: None,
  )
  return engine.unstack(out, 0)


def assert_trees_close(a, b, atol):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=atol, err_msg=k)


@pytest.mark.parametrize('model', ['softmax', 'hidden'])
def test_sparse_rows_equal_dense_for_sgd(model):
  model_cfg, params = init(model=model)
  hyper = engine.Hyper(0.5, 1e-3)
  base = classifier.TrainConfig(optimizer='sgd', batch_size=16, l2_biases=True)
  sparse = run(params, base._replace(sparse=True), model_cfg, hyper)
  dense = run(params, base._replace(sparse=False), model_cfg, hyper)
  assert_trees_close(sparse, dense, atol=1e-5)
  assert not np.allclose(sparse['L'], params['L'])  # the vectors did move


def test_sparse_differs_from_dense_when_l2_covers_vectors():
  """Lazy weight decay touches only the batch's rows: not the dense update."""
  model_cfg, params = init()
  hyper = engine.Hyper(0.5, 0.1)
  base = classifier.TrainConfig(
    optimizer='sgd', batch_size=16, l2_embeddings=True
  )
  sparse = run(params, base._replace(sparse=True), model_cfg, hyper)
  dense = run(params, base._replace(sparse=False), model_cfg, hyper)
  unused = np.setdiff1d(np.arange(V), toy_windows().words)
  # Rows never in a batch keep their value on the sparse path, decay on dense.
  np.testing.assert_array_equal(sparse['L'][unused], params['L'][unused])
  assert not np.allclose(dense['L'][unused], params['L'][unused])


def lazy_rows_reference(params, windows, model_cfg, cfg, lr, l2, epochs):
  """Training written independently of the engine's row machinery.

  Gradients of the full objective w.r.t. every parameter, L as a dense
  table (autodiff through the gather); dense parameters stepped by optax's
  own optimizers; the rows of L that a batch touches (np.unique) updated in
  float64 numpy by the documented lazy rules; batches in fit's order.
  """
  L = np.array(params['L'], np.float64)
  s1, s2 = np.zeros_like(L), np.zeros_like(L)
  if cfg.optimizer == 'adagrad':
    s1 += 0.1
  dense = {k: v for k, v in params.items() if k != 'L'}
  opt = {
    'sgd': optax.sgd(lr),
    'adam': optax.adam(lr),
    'adagrad': optax.adagrad(lr, initial_accumulator_value=0.1, eps=1e-7),
  }[cfg.optimizer]
  opt_state = opt.init(dense)
  B, n, t = cfg.batch_size, len(windows.labels), 0

  def objective(dense, L, idx):
    return classifier.training_objective(
      dict(dense, L=L),
      windows.words[idx],
      windows.casing[idx],
      windows.labels[idx],
      l2,
      model_cfg,
      cfg,
      objectives.get(cfg.objective),
    )

  for epoch in range(epochs):
    order = engine.epoch_order(0, epoch, n)
    for b in range(n // B):
      idx = order[b * B : (b + 1) * B]
      g_dense, g_L = jax.grad(objective, argnums=(0, 1))(
        dense, jnp.asarray(L, jnp.float32), idx
      )
      updates, opt_state = opt.update(g_dense, opt_state, dense)
      dense = optax.apply_updates(dense, updates)
      rows = np.unique(windows.words[idx])
      # Autodiff's dense L gradient has lambda*L in every row: keep it in the
      # touched rows only (lazy weight decay).
      g = np.asarray(g_L, np.float64)[rows]
      t += 1
      if cfg.optimizer == 'sgd':
        L[rows] -= lr * g
      elif cfg.optimizer == 'adagrad':
        s1[rows] += g**2
        L[rows] -= lr * g / np.sqrt(s1[rows] + 1e-7)
      else:
        s1[rows] = 0.9 * s1[rows] + 0.1 * g
        s2[rows] = 0.999 * s2[rows] + 0.001 * g**2
        L[rows] -= (
          lr
          * (s1[rows] / (1 - 0.9**t))
          / (np.sqrt(s2[rows] / (1 - 0.999**t)) + 1e-8)
        )
  return dict(dense, L=L)


@pytest.mark.parametrize('packed_rows', [True, False])
@pytest.mark.parametrize(
  'optimizer,l2_embeddings',
  [
    ('sgd', True),
    ('adagrad', False),
    ('adagrad', True),
    ('adam', False),
    ('adam', True),
  ],
)
def test_sparse_rows_follow_the_lazy_reference(
  optimizer, l2_embeddings, packed_rows
):
  """Batches of 16 from 40 words (each window repeats a word): every step
  touches another set of rows, and many rows several times. Both forms of
  the lazy row update (optim.lazy_row_update and its plain form)."""
  model_cfg, params = init()
  cfg = classifier.TrainConfig(
    optimizer=optimizer,
    batch_size=16,
    l2_embeddings=l2_embeddings,
    packed_rows=packed_rows,
  )
  lr, l2 = (0.1 if optimizer == 'sgd' else 0.01), 1e-2
  windows = toy_windows()
  got = run(
    params, cfg, model_cfg, engine.Hyper(lr, l2), epochs=2, windows=windows
  )
  want = lazy_rows_reference(params, windows, model_cfg, cfg, lr, l2, epochs=2)
  assert_trees_close(got, want, atol=2e-5)
  untouched = np.setdiff1d(np.arange(V), windows.words)
  assert len(untouched) > 0
  np.testing.assert_array_equal(got['L'][untouched], params['L'][untouched])


def test_representatives_need_no_reset_between_steps():
  """Whatever the slot table holds, each distinct id gets exactly one
  representative, and every position points to a position of its own id."""
  rng = np.random.default_rng(0)
  slot = jnp.asarray(rng.integers(-5, 50, V), jnp.int32)  # stale garbage
  for _ in range(3):
    ids = jnp.asarray(rng.integers(0, 12, 30), jnp.int32)
    slot, rep, first = optim.representatives(slot, ids)
    ids, rep, first = np.asarray(ids), np.asarray(rep), np.asarray(first)
    np.testing.assert_array_equal(ids[rep], ids)
    np.testing.assert_array_equal(np.sort(ids[first]), np.unique(ids))
    np.testing.assert_array_equal(first, rep == np.arange(len(ids)))


@pytest.mark.parametrize('optimizer', ['sgd', 'adagrad', 'adam'])
def test_stacked_configs_equal_separate_runs(optimizer, stack_mode):
  """A stack of 3 configurations trains each as its own run would: bit for
  bit where the stack runs them one after another (engine.stack_mode
  'map', a CPU's), to float rounding where it is vmapped (an
  accelerator's, run here too)."""
  model_cfg, _ = init()
  cfg = classifier.TrainConfig(
    optimizer=optimizer, batch_size=16, l2_embeddings=True
  )
  grid = [(1e-4, 0), (1e-2, 1), (0.0, 2)]
  inits = [init(seed)[1] for _, seed in grid]
  lr = 0.1 if optimizer != 'adam' else 0.01
  separate = [
    run(p, cfg, model_cfg, engine.Hyper(lr, l2), seed=s)
    for p, (l2, s) in zip(inits, grid)
  ]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *inits)
  hyper = engine.Hyper(np.full(3, lr), np.array([l2 for l2, _ in grid]))
  together, _, _ = fit_windows(
    stacked,
    toy_windows(),
    hyper,
    [s for _, s in grid],
    model_cfg,
    cfg,
    epochs=2,
    log=lambda _: None,
  )
  for i, want in enumerate(separate):
    got = engine.unstack(together, i)
    if stack_mode == 'map' and bit_identical_backend():
      for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
    else:
      assert_trees_close(got, want, atol=1e-5)


def test_fit_does_not_consume_the_callers_parameters():
  model_cfg, params = init()
  before = np.array(params['V'])
  run(
    params,
    classifier.TrainConfig(batch_size=16),
    model_cfg,
    engine.Hyper(0.01, 0.0),
  )
  np.testing.assert_array_equal(np.asarray(params['V']), before)


@pytest.mark.parametrize('stacked', [False, True])
def test_fit_compiles_its_program_once(stacked):
  """The compile call and the timed calls must hit one jit cache entry:
  a second compilation would land inside the measured training time."""
  model_cfg, params = init(hidden=7 if stacked else 5)  # shapes no test used
  cfg = classifier.TrainConfig(batch_size=16)
  program = engine.program()
  S = 2 if stacked else 1
  params = engine.stack([params] * S)
  hyper, seeds = engine.Hyper(np.full(S, 0.01), np.zeros(S)), list(range(S))
  before = program._cache_size()
  _, _, stats = fit_windows(
    params,
    toy_windows(),
    hyper,
    seeds,
    model_cfg,
    cfg,
    epochs=2,
    steps_per_call=2,
    log=lambda _: None,
  )
  assert stats['steps'] == 2 * (N // 16)  # several calls, odd chunk sizes
  assert program._cache_size() == before + 1


def test_frozen_embeddings_stay_fixed():
  model_cfg, params = init()
  out = run(
    params,
    classifier.TrainConfig(batch_size=16, freeze_embeddings=True),
    model_cfg,
    engine.Hyper(0.01, 0.0),
  )
  np.testing.assert_array_equal(out['L'], params['L'])
  assert not np.allclose(out['V'], params['V'])


def test_dropout_changes_training_but_not_prediction_shape():
  model_cfg, params = init()
  drop_cfg = model_cfg._replace(dropout=0.5)
  cfg = classifier.TrainConfig(batch_size=16)
  a = run(params, cfg, model_cfg, engine.Hyper(0.01, 0.0))
  b = run(params, cfg, drop_cfg, engine.Hyper(0.01, 0.0))
  assert not np.allclose(a['V'], b['V'])
  pred, loss = classifier.predict(b, toy_windows(), drop_cfg, XENT, batch=40)
  assert pred.shape == loss.shape == (N,)


def test_predict_in_batches_equals_one_batch():
  model_cfg, params = init()
  p1, l1 = classifier.predict(
    params, toy_windows(), model_cfg, XENT, batch=1000
  )
  p2, l2 = classifier.predict(params, toy_windows(), model_cfg, XENT, batch=7)
  np.testing.assert_array_equal(p1, p2)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)


def test_cross_entropy_and_margin_against_numpy():
  rng = np.random.default_rng(0)
  f = rng.normal(size=(20, 5)).astype(np.float32)
  y = rng.integers(0, 5, 20)
  p = np.exp(f - f.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  np.testing.assert_allclose(
    losses.cross_entropy(f, y), -np.log(p[np.arange(20), y]), rtol=1e-5
  )
  other = np.where(np.eye(5, dtype=bool)[y], -np.inf, f).max(1)
  np.testing.assert_allclose(
    losses.multiclass_margin(f, y),
    np.maximum(0, 1 + other - f[np.arange(20), y]),
    rtol=1e-6,
  )
  s, sc = rng.normal(size=20), rng.normal(size=(20, 3))
  np.testing.assert_allclose(
    losses.window_margin(s, sc),
    np.maximum(0, 1 - s[:, None] + sc).sum(1),
    rtol=1e-6,
  )


@pytest.mark.parametrize(
  'embeddings,biases,want',
  [
    (False, False, ('V', 'W')),
    (True, False, ('L', 'L_case', 'V', 'W')),
    (False, True, ('V', 'W', 'b', 'c')),
    (True, True, ('L', 'L_case', 'V', 'W', 'b', 'c')),
  ],
)
def test_l2_conventions(embeddings, biases, want):
  _, params = init()
  assert losses.regularized_keys(params, embeddings, biases) == tuple(
    sorted(want)
  )
  total = sum(float(np.sum(np.square(params[k]))) for k in want)
  np.testing.assert_allclose(
    losses.l2_penalty(params, 0.3, embeddings, biases), 0.15 * total, rtol=1e-5
  )


@pytest.mark.parametrize('objective', ['xent', 'max_margin'])
def test_training_learns_a_synthetic_corpus(corpus, objective):
  ds = dataset_lib.load_dataset(corpus, embeddings='random', log=lambda _: None)
  model_cfg = model_lib.ModelConfig(hidden=32)
  cfg = classifier.TrainConfig(objective=objective, batch_size=32)
  result = training.train(
    setup_lib.resolve(ds, model_cfg, cfg),
    engine.Hyper(0.01, 0.0),
    epochs=15,
    log=lambda _: None,
  ).result
  assert result['dev']['f1'] > 90, result['dev']
  assert result['test']['f1'] > 90, result['test']
  assert result['train_windows_per_sec'] > 0


@pytest.mark.parametrize('model', ['hidden', 'scorer', 'softmax'])
def test_init_params_are_the_eager_draws(model):
  """model.init_params draws in one compiled program and scales on the
  host: the very floats of the eager formulas (0.1 N(0, 1) tables, Glorot
  uniform matrices), bit for bit, as XLA:CPU computes them. (The host's
  numbers on every backend: a GPU's eager sqrt may differ in the last bit.)"""
  with jax.default_device(jax.devices('cpu')[0]):
    _init_params_are_the_eager_draws(model)


def _init_params_are_the_eager_draws(model):
  cfg = model_lib.ModelConfig(model=model, hidden=7)
  key = jax.random.key(3)
  got = model_lib.init_params(
    key,
    cfg,
    vocab_size=11,
    num_classes=4,
    embed_dim=6,
    feature_rows=9,
    feature_kinds=2,
    feature_dim=3,
  )
  k_l, k_case, k_1, k_2 = jax.random.split(key, 4)
  glorot = jax.nn.initializers.glorot_uniform()
  D = 5 * (6 + 5 + 2 * 3)
  want = {
    'L': 0.1 * jax.random.normal(k_l, (11, 6), jnp.float32),
    'L_case': 0.1 * jax.random.normal(k_case, (8, 5)),
    'L_feat': 0.1
    * jax.random.normal(jax.random.fold_in(key, 5), (9, 3), jnp.float32),
  }
  if model == 'softmax':
    want['W'] = jnp.zeros((4, D))
  else:
    want['W' if model == 'scorer' else 'V'] = glorot(k_1, (7, D), jnp.float32)
    second = glorot(k_2, (1 if model == 'scorer' else 4, 7), jnp.float32)
    want.update({'U': second[0]} if model == 'scorer' else {'W': second})
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_glorot_scale_is_jax_float32_arithmetic():
  """The host's Glorot scale is jax's own float32 sqrt(3 variance) on
  XLA:CPU, for many shapes (a float64 scale would differ in the last bit for
  some; so may a GPU's sqrt, which init_params does not use)."""
  rng = np.random.default_rng(0)
  ones = [
    np.ones((a, b), np.float32) for a, b in rng.integers(1, 2000, (300, 2))
  ]
  got = [model_lib._glorot(u)[0, 0] for u in ones]
  with jax.default_device(jax.devices('cpu')[0]):
    want = [
      jnp.sqrt(3 * jnp.array(1 / ((a + b) / 2), jnp.float32))
      for a, b in (u.shape for u in ones)
    ]
  np.testing.assert_array_equal(got, want)
