"""The training engine: one state, one compiled loop, one `fit` for S configs.

Every model trains through `fit`, which always trains a stack of S
configurations (S = 1 for a single run): parameters, optimizer state and
hyperparameters carry a leading axis S, each configuration has its own seed,
and the data are shared. What differs between models is a *task*
(`research.classifier.ClassifierTask`, `research.window_scorer.ScorerTask`):
a hashable object with

  init_state(params, seed) -> TrainState
  order(seed, epoch, n)    -> [n] int32 host array (the epoch's data order)
  step(state, data, order_N, index, hyper) -> (state, metrics_M)
  metric_names()           -> the M per-step metrics (e.g. ('loss',))
  windows_per_step()       -> windows scored by one step (for windows/s)
  batch_size()             -> the batch size (for the default steps/epoch)
  keeps_per_step()         -> whether fit returns each step's metrics

The engine runs up to `steps_per_call` steps inside one compiled call
(`run_steps`, a `lax.fori_loop`), with the data on the device, and moves the
per-step metrics to the host once per call. Learning rate and L2 strength are
traced (`Hyper`), so one program serves a whole sweep; for S > 1 it is
`jax.vmap`-ed over the configurations, for S = 1 the stack axis is dropped
inside the compiled call so that a single run compiles the unbatched program.

A task's step updates its parameters with `research.optim.apply_gradients`,
the one optimizer update of every model.
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research import parallel
from research.errors import UserError


class Hyper(NamedTuple):
  """Traced hyperparameters: [S] vectors in `fit`, scalars inside a step."""

  lr: Any
  l2: Any


class TrainState(NamedTuple):
  params: dict  # all parameters, L included
  opt_state: Any  # optax state of the dense (non-L) trainable parameters
  rows_state: dict  # row-wise optimizer state of L (sparse path only)
  step: jax.Array
  key: jax.Array
  diverged: jax.Array  # the step whose update was not finite; -1: none


def run_steps(state, data, order_N, first, num_steps, hyper, task, max_steps):
  """Steps first .. first+num_steps-1 of an epoch in one compiled loop.

  num_steps (<= max_steps) is traced, so every chunk size shares one
  program. Returns (state, (sum_M, count, last_M, metrics_TxM)): the
  metrics summed over the steps taken before the configuration diverged
  (`optim.apply_gradients`' guard), how many those were, the last finite
  metrics, and, when `task.keeps_per_step()`, each step's in the first
  num_steps rows of a [max_steps, M] array (else [0, M]: writing a row per
  step costs a vmapped sweep about 7% of its time).
  """
  keep = task.keeps_per_step()

  def body(i, carry):
    state, sum_M, count, last_M, metrics_TxM = carry
    state, m_M = task.step(state, data, order_N, first + i, hyper)
    ok = state.diverged < 0
    sum_M = sum_M + jnp.where(ok, m_M, 0.0)
    last_M = jnp.where(ok, m_M, last_M)
    if keep:
      metrics_TxM = jax.lax.dynamic_update_index_in_dim(metrics_TxM, m_M, i, 0)
    return state, sum_M, count + ok, last_M, metrics_TxM

  M = len(task.metric_names())
  init = (
    state,
    jnp.zeros(M, jnp.float32),
    jnp.zeros((), jnp.int32),
    jnp.full(M, jnp.nan, jnp.float32),
    jnp.zeros((max_steps if keep else 0, M), jnp.float32),
  )
  state, sum_M, count, last_M, metrics_TxM = jax.lax.fori_loop(
    0, num_steps, body, init
  )
  return state, (sum_M, count, last_M, metrics_TxM)


def stack_mode():
  """How a compiled step runs the S configurations of a stack: 'map' (one
  after another, `lax.map`) on a CPU, 'vmap' (batched) elsewhere.

  On a CPU the batched program is no faster (bench: the vmapped sweep of 8
  took 9.9x one configuration's time), and the configurations run one by
  one are each computed exactly as their own run's program: on any mesh, a
  configuration's numbers are those of the one-device run. A batched
  program's products are not (their float sums depend on the batch size).
  """
  return 'map' if jax.default_backend() == 'cpu' else 'vmap'


def _over_configs(run, state, data, order_SxN, first, num_steps, hyper):
  """`run` for each of the stack's configurations (`stack_mode`)."""
  if stack_mode() == 'vmap':
    return jax.vmap(run, in_axes=(0, None, 0, None, None, 0))(
      state, data, order_SxN, first, num_steps, hyper
    )
  return jax.lax.map(
    lambda c: run(c[0], data, c[1], first, num_steps, c[2]),
    (state, order_SxN, hyper),
  )


def _run_stack(
  state, data, order_SxN, first, num_steps, hyper, task, max_steps
):
  """`run_steps` for the S stacked configurations (`_over_configs` when
  S > 1)."""
  run = functools.partial(run_steps, task=task, max_steps=max_steps)
  if order_SxN.shape[0] == 1:
    squeeze = functools.partial(jax.tree.map, lambda a: a[0])
    state, metrics = run(
      squeeze(state), data, order_SxN[0], first, num_steps, squeeze(hyper)
    )
    return jax.tree.map(lambda a: a[None], (state, metrics))
  return _over_configs(run, state, data, order_SxN, first, num_steps, hyper)


# XLA:CPU hands float32 matrix products to YNNPACK by default; its own
# (Eigen) kernels run these models' products faster: experiments/bench.py
# times the training step both ways in every run. Only the CPU gets it.
CPU_COMPILER_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)


def default_compiler_options():
  """The training program's XLA options on the default backend."""
  return CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else ()


def _run_local(
  state, data, order_SxN, first, num_steps, hyper, task, max_steps
):
  """`run_steps` vmapped over this device's configurations (the per-device
  program of `sharded_program`)."""
  run = functools.partial(run_steps, task=task, max_steps=max_steps)
  return jax.vmap(run, in_axes=(0, None, 0, None, None, 0))(
    state, data, order_SxN, first, num_steps, hyper
  )


@functools.cache
def sharded_program(mesh, compiler_options=None):
  """The training loop on a mesh (research.parallel): configurations split
  over 'config', each one's batch over 'data' (jax.shard_map; the step's
  collectives are in parallel.across_data). The state and hyperparameters
  are sharded [config], the order [config, data], the data replicated."""
  if compiler_options is None:
    compiler_options = default_compiler_options()
  P = jax.sharding.PartitionSpec
  D = mesh.shape['data']

  def run(state, data, order_SxN, first, num_steps, hyper, task, max_steps):
    def local(state, data, order_SxN, first, num_steps, hyper):
      with parallel.data_parallel(D):
        return _run_local(
          state, data, order_SxN, first, num_steps, hyper, task, max_steps
        )

    return jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P('config'), P(), P('config', 'data'), P(), P(), P('config')),
      out_specs=(P('config'), P('config')),
      check_vma=False,
    )(state, data, order_SxN, first, num_steps, hyper)

  return jax.jit(
    run,
    static_argnames=('task', 'max_steps'),
    donate_argnames=('state',),
    compiler_options=dict(compiler_options) or None,
  )


def split_order(order_SxN, batch, parts, steps):
  """An epoch's order laid out for a data axis of `parts` devices: device
  d's block holds, step after step, its share (positions d*b .. d*b+b-1,
  b = batch/parts) of each step's global batch. [S, parts*steps*b]."""
  S, n = order_SxN.shape
  if steps * batch > n:
    raise ValueError(f'{steps} steps of {batch} need {steps * batch} > {n}')
  b = batch // parts
  used = np.asarray(order_SxN)[:, : steps * batch].reshape(S, steps, parts, b)
  return used.transpose(0, 2, 1, 3).reshape(S, parts * steps * b)


@functools.cache
def program(compiler_options=None):
  """The jitted training loop over a stack of configurations.

  compiler_options: XLA options as ((name, value), ...); None picks
  CPU_COMPILER_OPTIONS on the CPU and nothing elsewhere, () nothing.
  """
  if compiler_options is None:
    compiler_options = default_compiler_options()
  return jax.jit(
    _run_stack,
    static_argnames=('task', 'max_steps'),
    donate_argnames=('state',),
    compiler_options=dict(compiler_options) or None,
  )


def stack(trees):
  """Stacks a list of S pytrees along a new leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def unstack(tree, i):
  """The i-th configuration of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


# The divergence guard's bound on a step's loss (a mean per window or word;
# optim.apply_gradients): the objectives here start near log C, and a
# healthy run never comes near it.
MAX_LOSS = 1e6


class _Placed(NamedTuple):
  """A stack of configurations laid out for its program (`_place`)."""

  mesh: Any  # a jax Mesh, or None for one device
  task: Any  # the task each device runs (its share of a data axis' batch)
  state: TrainState
  hyper: Hyper
  data: Any
  program: Any
  orders: Any  # epoch -> the epoch's order arrays
  host: Any  # tree -> the S real configurations' arrays


def _place(task, params, hyper, seeds, data, num_examples, spe, options):
  """The initial state of S configurations, the data and the program, on
  the mesh of `parallel.resolve` (one device: the plain program)."""
  S, B = len(seeds), task.batch_size()
  mesh = parallel.resolve(S, B, data_ok=getattr(task, 'data_parallel', True))
  # On a mesh the stack is padded to a multiple of the config axis with
  # copies of the last configuration (trained, never returned).
  S_run = parallel.padded(S, mesh) if mesh else S
  run_seeds = seeds + seeds[-1:] * (S_run - S)
  if S_run > S:
    pad = functools.partial(
      jax.tree.map,
      lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], S_run - S, 0)]),
    )
    params, hyper = pad(params), pad(hyper)
  params = jax.tree.map(jnp.array, params)  # a copy: the state is donated
  state = jax.vmap(task.init_state)(params, jnp.asarray(run_seeds, jnp.uint32))
  P = jax.sharding.PartitionSpec
  if mesh is not None:
    D = mesh.shape['data']
    run_task = task.with_batch(B // D) if D > 1 else task
    state = parallel.put(parallel.to_host(state), mesh, P('config'))
    hyper = parallel.put(parallel.to_host(hyper), mesh, P('config'))
    data = parallel.put(parallel.to_host(data), mesh, P())
    program_fn = sharded_program(mesh, options)
  else:
    D, run_task = 1, task
    program_fn = program(options)

  def orders(epoch):
    order = np.stack([task.order(s, epoch, num_examples) for s in run_seeds])
    if mesh is None:
      return jnp.asarray(order)
    return parallel.put(
      split_order(order, B, D, spe), mesh, P('config', 'data')
    )

  def host(tree):
    if mesh is None:
      return tree
    return jax.tree.map(lambda a: a[:S], parallel.to_host(tree))

  return _Placed(mesh, run_task, state, hyper, data, program_fn, orders, host)


def lower(task, params, hyper, seeds, data, *, num_examples, max_steps=1):
  """The lowered training program of `fit`'s arguments on the current mesh
  (for inspecting what it compiles to, e.g. its collectives)."""
  S = len(seeds)
  hyper = Hyper(
    jnp.asarray(hyper.lr, jnp.float32).reshape(S),
    jnp.asarray(hyper.l2, jnp.float32).reshape(S),
  )
  spe = num_examples // task.batch_size()
  placed = _place(
    task, params, hyper, list(seeds), data, num_examples, spe, None
  )
  return placed.program.lower(
    placed.state,
    placed.data,
    placed.orders(0),
    0,
    1,
    placed.hyper,
    task=placed.task,
    max_steps=max_steps,
  )


class Diverged(UserError):
  """A single run whose loss or update stopped being finite."""


def _record_of(step, history, sum_SxM, count_S, last_SxM, extra_record):
  """The JSON part of a checkpoint: where the loop stands."""
  return {
    'step': step,
    'history': history,
    'sum': sum_SxM.tolist(),
    'count': count_S.tolist(),
    'last': [[None if np.isnan(v) else v for v in r] for r in last_SxM],
    'extra': extra_record,
  }


def fit(
  task,
  params,
  hyper,
  seeds,
  data,
  *,
  num_examples,
  epochs,
  steps_per_epoch=None,
  evaluate=None,
  eval_every=0,
  eval_at_start=False,
  on_eval=None,
  steps_per_call=500,
  compiler_options=None,
  log=print,
  name='',
  checkpoint=None,
  extra=None,
  stop_on_divergence=None,
):
  """Trains S configurations of one task together.

  Args:
    task: a task (see the module docstring); hashable, static.
    params: initial parameters stacked along a leading axis S.
    hyper: Hyper(lr, l2), each of shape [S].
    seeds: S ints, one per configuration (order, dropout, sampling).
    data: the task's training data (device arrays), shared by all S.
    num_examples: n, the length of the task's epoch order.
    epochs: passes of `steps_per_epoch` steps.
    steps_per_epoch: default n // task.windows_per_step batch; a pass's last
      partial batch is left out.
    evaluate: optional fn(stacked params) -> dict, called every
      `eval_every` steps (0: at the end of each epoch), at the end, and at
      step 0 when `eval_at_start`.
    on_eval: optional fn(row) called with each history row as it is made
      (and, on resume, with each row of the checkpoint's history).
    steps_per_call: most steps per compiled call (progress granularity).
    compiler_options: XLA options of the training program (see `program`).
    log: progress line printer.
    name: a label for the progress lines.
    checkpoint: an optional research.checkpoint.Checkpointer: the state is
      saved every `checkpoint.every` steps (0: at every evaluation) and at
      the end; with checkpoint.resume a run resumes from the newest, with
      results bit-identical to an uninterrupted run (the data order and the
      PRNG keys follow from (seed, step)).
    extra: optional state of the caller saved with each checkpoint: an
      object with get() -> (flat dict of arrays, JSON-able record) and
      set(dict, record) (e.g. the best-dev parameters).
    stop_on_divergence: raise Diverged when a configuration diverges
      (default: when S = 1). Otherwise a diverged configuration keeps its
      last finite parameters and the others go on.

  Returns:
    (params, history, stats): stacked final parameters; history is the list
    of evaluate() results, each with 'step', 'epoch' and 'train_<metric>'
    (the mean per configuration since the previous row over the steps
    before it diverged, [S] lists; None at step 0) added; stats has
    'train_windows_per_sec' (windows of all S configurations per second of
    stepping: compilation and evaluation excluded), 'train_seconds',
    'compile_seconds', 'steps', 'diverged_at' ([S]: the 1-based step whose
    update was not finite, or None), 'resumed_from' (the checkpoint's step
    or None), and, when the task keeps them, 'per_step' ({metric: [S,
    steps] array}).

  Raises:
    Diverged: see stop_on_divergence.
  """
  seeds = [int(s) for s in seeds]
  S = len(seeds)
  if stop_on_divergence is None:
    stop_on_divergence = S == 1
  B = task.batch_size()
  spe = steps_per_epoch or num_examples // B
  if spe == 0:
    raise UserError(
      f'batch size {B} is larger than the {num_examples:,} '
      'training windows; pass a smaller --batch_size'
    )
  total_steps = spe * epochs
  eval_every = eval_every or spe
  save_every = (checkpoint.every or eval_every) if checkpoint else 0
  names = task.metric_names()
  per_window = task.windows_per_step()
  hyper = Hyper(
    jnp.asarray(hyper.lr, jnp.float32).reshape(S),
    jnp.asarray(hyper.l2, jnp.float32).reshape(S),
  )
  placed = _place(
    task, params, hyper, seeds, data, num_examples, spe, compiler_options
  )
  state, hyper, data = placed.state, placed.hyper, placed.data
  orders, host, mesh = placed.orders, placed.host, placed.mesh

  max_steps = max(1, min(steps_per_call, total_steps))
  # A call of zero steps compiles (or finds in jit's cache) the program. It
  # is called exactly as the loop below calls it: jit keys its cache on how
  # arguments are passed, so a positional task here and a keyword one there
  # would compile twice (the second time inside the timed steps).
  step_fn = functools.partial(
    placed.program, task=placed.task, max_steps=max_steps
  )
  t0 = time.perf_counter()
  state, _ = step_fn(state, data, orders(0), 0, 0, hyper)
  jax.block_until_ready(state)
  compile_seconds = time.perf_counter() - t0

  history, chunks, train_seconds, step = [], [], 0.0, 0
  M = len(names)
  sum_SxM, count_S = np.zeros((S, M)), np.zeros(S, np.int64)
  last_SxM = np.full((S, M), np.nan)
  resumed_from = None
  if checkpoint is not None and checkpoint.resume:
    resume = checkpoint.latest() is not None
  else:
    resume = False
  if resume:
    state, extra_tree, record = checkpoint.restore(state)
    step, history = record['step'], record['history']
    sum_SxM = np.asarray(record['sum'], np.float64).reshape(S, M)
    count_S = np.asarray(record['count'], np.int64)
    last_SxM = np.asarray(record['last'], np.float64).reshape(S, M)
    if extra is not None:
      extra.set(extra_tree, record['extra'])
    resumed_from = step
    log(
      f'{name}resumed at step {step}/{total_steps} from {checkpoint.directory}'
    )
    if on_eval is not None:
      for row in history:
        on_eval(row)

  def record():
    row = {'step': step, 'epoch': step / spe}
    for j, metric in enumerate(names):
      row[f'train_{metric}'] = (
        [
          float(sum_SxM[i, j] / count_S[i]) if count_S[i] else None
          for i in range(S)
        ]
        if step_since_row
        else None
      )
    row.update(evaluate(host(state.params)))
    history.append(row)
    if on_eval is not None:
      on_eval(row)

  def save():
    extra_tree, extra_record = extra.get() if extra is not None else ({}, None)
    checkpoint.save(
      step,
      state,
      extra_tree,
      _record_of(step, history, sum_SxM, count_S, last_SxM, extra_record),
    )

  step_since_row = step % eval_every if step else 0
  if evaluate is not None and eval_at_start and step == 0:
    record()
  while step < total_steps:
    epoch, first = divmod(step, spe)
    order = orders(epoch)
    while first < spe:
      num = min(max_steps, spe - first, eval_every - step % eval_every)
      if save_every:
        num = min(num, save_every - step % save_every)
      t = time.perf_counter()
      state, (chunk_SxM, n_S, last, per_step_SxTxM) = step_fn(
        state, data, order, first, num, hyper
      )
      chunk_SxM = np.asarray(host(chunk_SxM))  # waits for the device
      train_seconds += time.perf_counter() - t
      if task.keeps_per_step():
        chunks.append(np.asarray(host(per_step_SxTxM))[:, :num])
      n_S, last = np.asarray(host(n_S)), np.asarray(host(last))
      last_SxM = np.where(n_S[:, None] > 0, np.asarray(last), last_SxM)
      sum_SxM, count_S = sum_SxM + chunk_SxM, count_S + n_S
      first, step = first + num, step + num
      step_since_row += num
      done = step - (resumed_from or 0)
      wps = done * per_window * S / train_seconds
      eta = (total_steps - step) * per_window * S / wps
      shown = ' '.join(
        f'{m} {chunk_SxM[:, j].sum() / max(n_S.sum(), 1):.4f}'
        for j, m in enumerate(names)
      )
      diverged = np.asarray(host(state.diverged))
      gone = int(np.sum(diverged >= 0))
      log(
        f'{name}epoch {epoch + 1}/{epochs} step {step}/{total_steps} '
        f'{shown} {wps:,.0f} windows/s ETA {eta:.0f}s'
        + (f' ({gone} diverged)' if gone else '')
      )
      if stop_on_divergence and np.any(diverged >= 0):
        i = int(np.argmax(diverged >= 0))
        loss = last_SxM[i, 0]
        raise Diverged(
          f'{name}training diverged at step {diverged[i] + 1}: its loss was '
          f'not finite or above {MAX_LOSS:g}, or its gradients not finite '
          f'(loss of the last good step: '
          f'{"none" if np.isnan(loss) else f"{loss:.4g}"}); no parameters '
          'were written'
          + (
            f' (the last good checkpoint is in {checkpoint.directory})'
            if checkpoint is not None and checkpoint.latest() is not None
            else ''
          )
          + f'; try a smaller --lr (this run: {float(hyper.lr[i]):g})'
        )
      if step % eval_every == 0 or step == total_steps:
        if evaluate is not None:
          record()
        sum_SxM, count_S = np.zeros((S, M)), np.zeros(S, np.int64)
        step_since_row = 0
      if save_every and (step % save_every == 0 or step == total_steps):
        save()
  all_SxTxM = (
    np.concatenate(chunks, axis=1)
    if chunks
    else np.zeros((S, 0, len(names)), np.float32)
  )
  diverged = np.asarray(host(state.diverged))
  stats = {
    'train_windows_per_sec': (step - (resumed_from or 0))
    * per_window
    * S
    / max(train_seconds, 1e-9),
    'train_seconds': train_seconds,
    'compile_seconds': compile_seconds,
    'steps': step,
    'diverged_at': [int(d) + 1 if d >= 0 else None for d in diverged],
  }
  if task.keeps_per_step():
    stats['per_step'] = {m: all_SxTxM[:, :, j] for j, m in enumerate(names)}
  if mesh is not None:
    stats['mesh'] = dict(mesh.shape)
  return host(state.params), history, stats


def predict(fn, params, arrays, batch=8192):
  """fn(params, *arrays[i:i+batch]) over fixed-size batches, as numpy.

  `fn` is jitted and returns an array or a tuple of arrays with a leading
  axis of the batch; the last batch is padded (one compiled shape) unless
  all the data fit in one. Returns the outputs concatenated.
  """
  n = len(arrays[0])
  outs = []
  for start in range(0, n, batch):
    part = [np.asarray(a[start : start + batch]) for a in arrays]
    pad = batch - len(part[0]) if n > batch else 0
    if pad:
      part = [np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in part]
    out = fn(params, *part)
    single = not isinstance(out, tuple)
    out = (out,) if single else out
    outs.append([np.asarray(o)[: len(o) - pad] for o in out])
  if not outs:
    raise ValueError('predict: no data')
  joined = tuple(np.concatenate(parts) for parts in zip(*outs))
  return joined[0] if single else joined


def epoch_order(seed, epoch, n):
  """The order of the n training windows in an epoch: a permutation [n].

  Drawn on the host: jax.random.permutation sorts n keys on the device,
  about 0.1 s per CoNLL epoch on a CPU, which would count as training time.
  """
  rng = np.random.default_rng((int(seed) % 2**32, epoch))
  return rng.permutation(n).astype(np.int32)
