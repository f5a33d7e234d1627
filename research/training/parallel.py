"""Devices: the mesh a training program runs on, and what its steps share.

A mesh has two axes (`jax.make_mesh`, explicit axis types):
  config: the S stacked configurations of a sweep (or an ensemble) are
    split across its devices. Nothing is communicated: each device runs
    its S / C configurations as one device runs a stack
    (engine.stack_mode), so on a CPU each configuration's numbers are
    those of the one-device run, bit for bit.
  data: one configuration's batch is split across its D devices. The step
    sums the dense gradients across the axis (`across_data`, weighted by
    each device's share of the batch), and gathers the sparse word-vector
    rows (ids, gradients) rather than reducing a dense [V, d] table; every
    device then applies the same lazy row update to its copy of the
    tables, which see the global batch. Results equal one device's up to
    the order of float sums.

A run's mesh spec ('auto', or 'CxD') travels in its training config
(`TrainConfig.mesh`, `ScorerConfig.mesh`); `resolve` turns it into a Mesh
for a fit of S configurations. The task each device of a data axis runs
carries the axis's size (`cfg.data_devices`, set by the engine), which the
step hands to `shard_rows` (each device's rows of a random draw made for the
global batch, so that dropout masks equal one device's) and `across_data`.
Nothing here is global state: the mesh is an argument.

Several processes (`initialize`, jax.distributed) form one mesh of all
their devices; arrays are built from each process's copy of the host data
(`put`) and brought back whole (`to_host`).
"""

import math

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from research.errors import UserError

AXES = ('config', 'data')
DATA = AXES[1]


def parse(spec):
  """'auto' -> None; 'CxD' -> (C, D)."""
  if spec == 'auto':
    return None
  try:
    c, d = (int(v) for v in spec.lower().split('x'))
    if c < 1 or d < 1:
      raise ValueError
  except ValueError:
    raise UserError(
      f'`mesh={spec}`: expected auto or CxD (C devices for the '
      'configurations, D for the batch), e.g. `mesh=4x1`'
    ) from None
  return c, d


def resolve(num_configs, batch_size, spec='auto', data_ok=True):
  """The Mesh for a fit of `num_configs` configurations at `batch_size`
  (None: one device, the plain program). 'auto' puts every device on
  config for a sweep (S > 1) and on data for a single run (as many as
  divide the batch; none for a task that cannot split its batch,
  `data_ok` False)."""
  n = jax.device_count()
  shape = parse(spec)
  if shape is None:
    if num_configs > 1:
      shape = (n, 1)
    elif not data_ok:
      shape = (1, 1)
    else:
      shape = (1, max(d for d in range(1, n + 1) if batch_size % d == 0))
  C, D = shape
  if D > 1 and not data_ok:
    raise UserError(
      f'`mesh={C}x{D}`: this model samples its batches on one device per '
      'configuration; pass `mesh=Cx1`'
    )
  if C * D > n:
    raise UserError(
      f'`mesh={C}x{D}` needs {C * D} devices; there are {n} '
      f'({jax.devices()[0].platform}); set JAX_NUM_CPU_DEVICES on a CPU, or '
      'pass a smaller `mesh`'
    )
  if batch_size % D:
    raise UserError(
      f'`mesh={C}x{D}`: the batch of {batch_size} does not split into {D} '
      f'equal parts; pass a `batch_size` divisible by {D}, or a smaller D'
    )
  if C * D == 1:
    return None
  axis_types = (jax.sharding.AxisType.Explicit,) * 2
  return jax.make_mesh(
    (C, D), AXES, axis_types=axis_types, devices=jax.devices()[: C * D]
  )


def padded(num_configs, mesh):
  """S rounded up to a multiple of the config axis."""
  C = mesh.shape['config']
  return math.ceil(num_configs / C) * C


# --- Inside the compiled step. -----------------------------------------------


def shard_rows(draw, rows, devices=1):
  """draw(global_rows) -> [global_rows, ...] a random draw for the whole
  batch; returns this device's `rows` of it, in a step whose batch is split
  across `devices` of the data axis (all of it on one device)."""
  if devices == 1:
    return draw(rows)
  full = draw(rows * devices)
  start = jax.lax.axis_index(DATA) * rows
  return jax.lax.dynamic_slice_in_dim(full, start, rows)


def across_data(g_dense, row_grads, loss, weight, devices=1):
  """The global batch's gradients and loss from each device's share.

  weight: this device's share of the batch (windows or words); its
  gradients and loss are means over it. Dense gradients and the loss
  become sum_d w_d g_d / sum_d w_d (a psum); the sparse rows' (ids,
  gradients) are gathered from every device, their gradients scaled by
  w_d / sum w, so that a row update sees the global batch. With one device
  (`devices` 1: no data axis) returns the arguments unchanged.
  """
  if devices == 1:
    return g_dense, row_grads, loss
  axis = DATA
  weight = jnp.asarray(weight, jnp.float32)
  total = jax.lax.psum(weight, axis)
  share = weight / total
  g_dense = jax.tree.map(lambda g: jax.lax.psum(g * share, axis), g_dense)
  loss = jax.lax.psum(loss * share, axis)
  gathered = {}
  for name, (ids_M, rows_Mxd, g_Mxd) in row_grads.items():
    gathered[name] = (
      jax.lax.all_gather(ids_M, axis, tiled=True),
      jax.lax.all_gather(rows_Mxd, axis, tiled=True),
      jax.lax.all_gather(g_Mxd * share, axis, tiled=True),
    )
  return g_dense, gathered, loss


# --- Host <-> mesh. ----------------------------------------------------------


def put(tree, mesh, spec):
  """Host arrays (the same on every process) as global arrays on `mesh`
  with PartitionSpec `spec`; each process supplies its devices' shards."""
  sharding = jax.sharding.NamedSharding(mesh, spec)

  def one(a):
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(
      a.dtype, jax.dtypes.prng_key
    ):
      impl = jax.random.key_impl(a)
      return jax.random.wrap_key_data(one(jax.random.key_data(a)), impl=impl)
    if jax.process_count() == 1:
      return jax.device_put(a, sharding)
    host = np.asarray(a)
    return jax.make_array_from_callback(
      host.shape, sharding, lambda index: host[index]
    )

  return jax.tree.map(one, tree)


def to_host(tree):
  """Global arrays as whole numpy arrays on every process."""

  def one(a):
    if not isinstance(a, jax.Array):
      return a
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      return a
    if a.is_fully_addressable:
      return np.asarray(a)
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))

  return jax.tree.map(one, tree)


def initialize(coordinator=None, num_processes=None, process_id=None):
  """jax.distributed.initialize: with no arguments the cluster's own
  detection (SLURM, TPU pods, ...); on CPUs the collectives go over gloo."""
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kw = {}
  if coordinator:
    kw = dict(
      coordinator_address=coordinator,
      num_processes=num_processes,
      process_id=process_id,
    )
  jax.distributed.initialize(**kw)
