"""research.training.rows: each op under vmap equals the op applied per
table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.training import rows

S, V, M, D = 3, 11, 9, 4


def inputs(seed=0):
  rng = np.random.default_rng(seed)
  tables = jnp.asarray(rng.normal(size=(S, V, D)), jnp.float32)
  ids = jnp.asarray(rng.integers(0, V, (S, M)), jnp.int32)  # with repeats
  values = jnp.asarray(rng.normal(size=(S, M, D)), jnp.float32)
  # keep one position per distinct id (the last), as put_distinct requires
  keep = np.zeros((S, M), bool)
  for s in range(S):
    _, last = np.unique(np.asarray(ids[s])[::-1], return_index=True)
    keep[s, M - 1 - last] = True
  return tables, ids, values, jnp.asarray(keep)


def per_table(fn, *args):
  return jnp.stack([fn(*(a[s] for a in args)) for s in range(S)])


@pytest.mark.parametrize('name', ['take', 'put', 'put_distinct', 'add'])
def test_vmapped_equals_per_table(name):
  tables, ids, values, keep = inputs()
  fn = getattr(rows, name)
  args = {
    'take': (tables, ids),
    'put': (tables, ids, values),
    'put_distinct': (tables, ids, values, keep),
    'add': (tables, ids, values),
  }[name]
  got = jax.jit(jax.vmap(fn))(*args)
  want = per_table(jax.jit(fn), *args)
  if name == 'put':  # a repeated id keeps one of its values: compare per id
    for s in range(S):
      for i in range(M):
        row = np.asarray(got[s, ids[s, i]])
        candidates = np.asarray(values[s][np.asarray(ids[s]) == ids[s, i]])
        assert any(np.array_equal(row, c) for c in candidates)
    untouched = np.setdiff1d(np.arange(V), np.asarray(ids[0]))
    np.testing.assert_array_equal(got[0][untouched], tables[0][untouched])
  else:
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_single_table_semantics():
  tables, ids, values, keep = inputs(1)
  t, i, v, k = tables[0], ids[0], values[0], keep[0]
  np.testing.assert_array_equal(rows.take(t, i), np.asarray(t)[np.asarray(i)])
  want = np.array(t)
  np.add.at(want, np.asarray(i), np.asarray(v))
  np.testing.assert_allclose(rows.add(t, i, v), want, rtol=1e-6)
  want = np.array(t)
  want[np.asarray(i)[np.asarray(k)]] = np.asarray(v)[np.asarray(k)]
  np.testing.assert_array_equal(rows.put_distinct(t, i, v, k), want)


def test_a_table_shared_by_all_configurations():
  """An unbatched table read with per-configuration ids stays unbatched."""
  tables, ids, _, _ = inputs(2)
  got = jax.vmap(rows.take, in_axes=(None, 0))(tables[0], ids)
  np.testing.assert_array_equal(got, np.asarray(tables[0])[np.asarray(ids)])
