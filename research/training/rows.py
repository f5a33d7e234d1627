"""Row gathers and scatters of a table that stay plain gathers under vmap.

`jax.vmap` turns `table[ids]` over S stacked tables [S, V, ...] into a
gather with batch dimensions, which XLA:CPU runs several times slower than
S plain gathers of the same rows (the vmapped sweep spent about a third of
its step in them). Each function here is what its docstring says for one
table; under vmap its rule indexes the stacked table by (configuration,
row) pairs, so the rows of all S configurations move with one plain
gather or scatter, in place.

Not by folding the stack into one [S*V, ...] table with offset ids: on a
GPU, XLA then copied every whole stacked table once per step (the reshape
feeding a fused scatter is not updated in place), so a 64-configuration
stack took 18.7x one configuration's time, and 14x longer with the 400k
vocabulary than with CoNLL's 22k; indexed by pairs, 4.7x and 0.99x
(`./launch.sh bench --sweep_configs=64` on an H200, docs/results.md).
"""

from jax import custom_batching
import jax.numpy as jnp


def _batched(x, batched, size):
  return x if batched else jnp.broadcast_to(x, (size,) + jnp.shape(x))


def _configs(table_SxVx_, ids_Sx_):
  """Each id's configuration s, [S, ...] like the ids: with them, the pair
  (s, id) names a row of the stacked table [S, V, ...]."""
  S = table_SxVx_.shape[0]
  s_Sx_ = jnp.arange(S, dtype=ids_Sx_.dtype).reshape(
    (S,) + (1,) * (ids_Sx_.ndim - 1)
  )
  return jnp.broadcast_to(s_Sx_, ids_Sx_.shape)


@custom_batching.custom_vmap
def take(table, ids):
  """table[ids]: the rows ids (any shape, all in range) of table [V, ...]."""
  return table[ids]


@take.def_vmap
def _take_vmap(size, in_batched, table, ids):
  table_b, ids_b = in_batched
  if not table_b:
    return table[ids], ids_b
  ids = _batched(ids, ids_b, size)
  return table[_configs(table, ids), ids], True


def _scatter(op):
  """op(table, ids, *rest) with a vmap rule that applies op once, to the
  stacked table with (configuration, row) index pairs: op must also accept
  ids of any shape, and a tuple of index arrays (ids[-1] the rows)."""
  fn = custom_batching.custom_vmap(op)

  @fn.def_vmap
  def _rule(size, in_batched, table, ids, *rest):
    table, ids, *rest = (
      _batched(x, b, size) for x, b in zip((table, ids, *rest), in_batched)
    )
    return op(table, (_configs(table, ids), ids), *rest), True

  return fn


@_scatter
def put(table, ids, values):
  """table with row ids[i] set to values[i]; for a repeated id, one wins."""
  return table.at[ids].set(values)


@_scatter
def put_distinct(table, ids, values, keep):
  """table with row ids[i] set to values[i] where keep[i].

  The kept ids must be distinct (the scatter is told its indices are
  unique); the others write nothing: they are sent to distinct indices past
  the table's rows, which the scatter drops.
  """
  lead, row_ids = (ids[:-1], ids[-1]) if isinstance(ids, tuple) else ((), ids)
  past = table.shape[len(lead)] + jnp.arange(
    row_ids.size, dtype=row_ids.dtype
  ).reshape(row_ids.shape)
  return table.at[(*lead, jnp.where(keep, row_ids, past))].set(
    values, mode='drop', unique_indices=True
  )


@_scatter
def add(table, ids, values):
  """table with values[i] added to row ids[i] (repeats accumulate)."""
  return table.at[ids].add(values)
