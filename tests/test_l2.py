"""L2 in one place: the optimizer (research.training.optim) adds lambda * theta.

* The gradient the optimizer adds (`optim.add_l2_dense`) is jax.grad of
  `losses.l2_penalty`, key by key, under every convention (weights only,
  with vectors, with biases, all): the penalty and its gradient agree.
* One sgd step with zero data gradients is exactly the step of the L2
  term: theta - lr lambda theta on the covered keys, the rest unchanged.
* Lazy L2 on the row tables (sparse updates): the rows a batch touches
  equal a dense reference with L2 on those rows (lambda * row once, however
  often the row occurs), untouched rows stay as they were; the dense path
  (sparse=False) decays every row.
* `optim.table_grads` routes gathered-row gradients: flattened to the row
  update, scatter-added into [V, d], or not at all (frozen).

Float64 (jax.enable_x64), so that the comparisons are exact or at 1e-15.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.formulas import losses
from research.training import classifier
from research.training import engine
from research.training import optim
from research.training import window_scorer

V, d = 7, 3
CONVENTIONS = [(e, b) for e in (False, True) for b in (False, True)]


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _params(seed=0):
  """Every kind of key: vectors, weights, biases, transitions."""
  rng = np.random.default_rng(seed)
  shapes = {
    'L': (V, d),
    'L_case': (4, 2),
    'L_feat': (5, 2),
    'V': (6, 5),
    'b': (6,),
    'W': (4, 6),
    'c': (4,),
    'A': (4, 4),
    'start': (4,),
    'end': (4,),
  }
  return {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}


def _cfg(**kw):
  return classifier.TrainConfig(optimizer='sgd', **kw)


@pytest.mark.parametrize('embeddings,biases', CONVENTIONS)
def test_the_optimizers_l2_gradient_is_the_penaltys(embeddings, biases):
  params, lam = _params(), 0.37
  cfg = _cfg(l2_embeddings=embeddings, l2_biases=biases)
  zeros = {k: jnp.zeros_like(v) for k, v in params.items()}
  got = optim.add_l2_dense(zeros, params, lam, cfg)
  want = jax.grad(losses.l2_penalty)(params, lam, embeddings, biases)
  assert got.keys() == want.keys()
  for k in params:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-15, err_msg=k)
  covered = set(optim.l2_keys(params, cfg))
  assert covered == set(losses.regularized_keys(params, embeddings, biases))
  for k in set(params) - covered:
    assert not np.any(got[k]), k  # exactly zero: the data gradient alone


@pytest.mark.parametrize('embeddings,biases', CONVENTIONS)
def test_a_step_without_data_gradient_is_the_l2_step(embeddings, biases):
  params, lr, lam = _params(1), 0.5, 0.2
  cfg = _cfg(l2_embeddings=embeddings, l2_biases=biases, sparse=False)
  state = optim.init_state(params, cfg, jax.random.key(0))
  zeros = {k: jnp.zeros_like(params[k]) for k in optim.dense_keys(params, cfg)}
  new, _ = optim.apply_gradients(
    state, zeros, engine.Hyper(lr, lam), cfg, state.key
  )
  covered = losses.regularized_keys(params, embeddings, biases)
  for k, theta in params.items():
    want = theta - lr * (lam * theta) if k in covered else theta
    np.testing.assert_allclose(new.params[k], want, rtol=1e-15, err_msg=k)


def _row_step(cfg, ids_M, g_Mxd, lr, lam):
  """One apply_gradients step of L from the gradients of its gathered rows
  (and a zero gradient for W); returns the new L."""
  params = {'L': _params(2)['L'], 'W': jnp.ones((2, 2))}
  state = optim.init_state(params, cfg, jax.random.key(0))
  rows_Mxd = params['L'][ids_M]
  g_tables, row_grads = optim.table_grads(
    params, cfg, {'L': (ids_M, rows_Mxd, g_Mxd)}
  )
  g_dense = dict(g_tables, W=jnp.zeros((2, 2)))
  new, _ = optim.apply_gradients(
    state, g_dense, engine.Hyper(lr, lam), cfg, state.key, row_grads
  )
  return params['L'], new.params['L']


@pytest.mark.parametrize('packed_rows', [True, False])
def test_lazy_l2_decays_touched_rows_once_and_others_not(packed_rows):
  """Sparse rows with L2 on the vectors: each touched row gets
  g = sum of its occurrences' gradients + lambda * row (once, though row 3
  occurs three times); untouched rows keep their value exactly."""
  ids_M = jnp.array([3, 1, 3, 5, 3], jnp.int32)
  g_Mxd = jnp.asarray(np.random.default_rng(3).normal(size=(5, d)))
  lr, lam = 0.3, 0.25
  cfg = _cfg(l2_embeddings=True, sparse=True, packed_rows=packed_rows)
  L, got = _row_step(cfg, ids_M, g_Mxd, lr, lam)
  g_Vxd = jnp.zeros_like(L).at[ids_M].add(g_Mxd)
  dense_reference = L - lr * (g_Vxd + lam * L)
  touched = np.array([1, 3, 5])
  untouched = np.setdiff1d(np.arange(V), touched)
  np.testing.assert_allclose(got[touched], dense_reference[touched], rtol=1e-15)
  np.testing.assert_array_equal(got[untouched], L[untouched])
  # Without L2 on the vectors the touched rows take the data step alone.
  cfg = cfg._replace(l2_embeddings=False)
  _, no_l2 = _row_step(cfg, ids_M, g_Mxd, lr, lam)
  np.testing.assert_allclose(
    no_l2[touched], (L - lr * g_Vxd)[touched], rtol=1e-15
  )


def test_dense_path_decays_every_row():
  """sparse=False: the [V, d] gradient plus lambda * L on every row, the
  untouched ones included."""
  ids_M = jnp.array([3, 1, 3, 5, 3], jnp.int32)
  g_Mxd = jnp.asarray(np.random.default_rng(3).normal(size=(5, d)))
  lr, lam = 0.3, 0.25
  cfg = _cfg(l2_embeddings=True, sparse=False)
  L, got = _row_step(cfg, ids_M, g_Mxd, lr, lam)
  g_Vxd = jnp.zeros_like(L).at[ids_M].add(g_Mxd)
  np.testing.assert_allclose(got, L - lr * (g_Vxd + lam * L), rtol=1e-15)
  assert not np.any(np.isclose(got[0], L[0]))  # row 0 was never looked up


def test_table_grads_routes_sparse_dense_and_frozen():
  params = {'L': jnp.zeros((V, d)), 'L_feat': jnp.zeros((5, 2))}
  ids_BxK = jnp.array([[1, 2, 1], [4, 1, 0]])
  g_BxKxd = jnp.arange(2 * 3 * d, dtype=jnp.float64).reshape(2, 3, d)
  rows_BxKxd = params['L'][ids_BxK]
  feat_ids = jnp.array([[0, 3]])
  feat_g = jnp.ones((1, 2, 2))
  gathered = {
    'L': (ids_BxK, rows_BxKxd, g_BxKxd),
    'L_feat': (feat_ids, params['L_feat'][feat_ids], feat_g),
  }
  g_tables, row_grads = optim.table_grads(params, _cfg(sparse=True), gathered)
  assert g_tables == {} and set(row_grads) == {'L', 'L_feat'}
  ids_M, rows_Mxd, g_Mxd = row_grads['L']
  np.testing.assert_array_equal(ids_M, ids_BxK.reshape(-1))
  np.testing.assert_array_equal(g_Mxd, g_BxKxd.reshape(-1, d))
  assert rows_Mxd.shape == (6, d)
  g_tables, row_grads = optim.table_grads(params, _cfg(sparse=False), gathered)
  assert row_grads == {} and set(g_tables) == {'L', 'L_feat'}
  want = np.zeros((V, d))
  np.add.at(want, np.asarray(ids_BxK), np.asarray(g_BxKxd))  # repeats summed
  np.testing.assert_array_equal(g_tables['L'], want)
  for sparse in (True, False):
    cfg = _cfg(sparse=sparse, freeze_embeddings=True)
    g_tables, row_grads = optim.table_grads(
      params, cfg, dict(gathered, L=(ids_BxK, rows_BxKxd, None))
    )
    assert 'L' not in g_tables and 'L' not in row_grads
    assert 'L_feat' in g_tables or 'L_feat' in row_grads


def test_a_model_without_l2_gets_nothing_added():
  """The window scorer has no L2 term (ScorerConfig.has_l2 is False)."""
  params = _params()
  cfg = window_scorer.ScorerConfig()
  assert optim.l2_keys(params, cfg) == ()
  g = {k: jnp.ones_like(v) for k, v in params.items()}
  got = optim.add_l2_dense(g, params, 0.5, cfg)
  assert all(got[k] is g[k] for k in g)
