"""Row gathers and scatters of a table that stay plain gathers under vmap.

`jax.vmap` turns `table[ids]` over S stacked tables [S, V, ...] into a
gather with batch dimensions, which XLA:CPU runs several times slower than
S plain gathers of the same rows (the vmapped sweep spent about a third of
its step in them). Each function here is what its docstring says for one
table; under vmap its rule folds the S tables into one [S*V, ...] table and
offsets configuration s's ids by s*V, so the rows move with one plain gather
or scatter.
"""

from jax import custom_batching
import jax.numpy as jnp


def _batched(x, batched, size):
  return x if batched else jnp.broadcast_to(x, (size,) + jnp.shape(x))


def _fold(table_SxVx_, ids_Sx_):
  """One [S*V, ...] table and ids offset into it, [S, ...]."""
  S, V = table_SxVx_.shape[:2]
  flat = table_SxVx_.reshape((S * V,) + table_SxVx_.shape[2:])
  offset = (jnp.arange(S, dtype=ids_Sx_.dtype) * V).reshape(
    (S,) + (1,) * (ids_Sx_.ndim - 1)
  )
  return flat, ids_Sx_ + offset


@custom_batching.custom_vmap
def take(table, ids):
  """table[ids]: the rows ids (any shape, all in range) of table [V, ...]."""
  return table[ids]


@take.def_vmap
def _take_vmap(size, in_batched, table, ids):
  table_b, ids_b = in_batched
  if not table_b:
    return table[ids], ids_b
  flat, ids = _fold(table, _batched(ids, ids_b, size))
  return flat[ids], True


def _scatter(op):
  """op(table, ids, *rest) with a vmap rule that applies op once, to the
  folded table (op must also accept ids of any shape)."""
  fn = custom_batching.custom_vmap(op)

  @fn.def_vmap
  def _rule(size, in_batched, table, ids, *rest):
    table, ids, *rest = (
      _batched(x, b, size) for x, b in zip((table, ids, *rest), in_batched)
    )
    flat, ids = _fold(table, ids)
    return op(flat, ids, *rest).reshape(table.shape), True

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
  past = table.shape[0] + jnp.arange(ids.size, dtype=ids.dtype).reshape(
    ids.shape
  )
  return table.at[jnp.where(keep, ids, past)].set(
    values, mode='drop', unique_indices=True
  )


@_scatter
def add(table, ids, values):
  """table with values[i] added to row ids[i] (repeats accumulate)."""
  return table.at[ids].add(values)
