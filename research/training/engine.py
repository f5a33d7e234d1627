"""The training engine: one state, one compiled loop the caller steps.

Every model trains as a stack of S configurations (S = 1 for a single run):
parameters, optimizer state and hyperparameters carry a leading axis S, each
configuration has its own seed, and the data are shared. What differs between
models is a *task* (`research.training.classifier.ClassifierTask`,
`research.training.sequence.SentenceTask`,
`research.training.window_scorer.ScorerTask`): a hashable object with

  init_state(params, seed) -> TrainState
  order(seed, epoch, n)    -> [n] int32 host array (the epoch's data order)
  step(state, data, order_N, index, hyper) -> (state, metrics_M)
  metric_names()           -> the M per-step metrics (e.g. ('loss',))
  windows_per_step()       -> windows scored by one step (for windows/s)
  batch_size()             -> the batch size (for the default steps/epoch)
  keeps_per_step()         -> whether the loop keeps each step's metrics

`Loop` is the compiled loop: iterating it trains, and it yields between compiled
calls at evaluation and checkpoint boundaries, so that its caller (the one
driver of every run, research.training.driver.drive) evaluates, selects, logs
and checkpoints.

The engine runs up to `steps_per_call` steps inside one compiled call
(`run_steps`, a `lax.fori_loop`), with the data on the device, and moves the
per-step metrics to the host once per call. Learning rate and L2 strength are
traced (`Hyper`), so one program serves a whole sweep; for S > 1 it is
`jax.vmap`-ed over the configurations, for S = 1 the stack axis is dropped
inside the compiled call so that a single run compiles the unbatched program.

A task's step updates its parameters with
`research.training.optim.apply_gradients`, the one optimizer update of every
model."""

import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.errors import UserError
from research.training import divergence
from research.training import meters
from research.training import parallel


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


STACK_MODES = ('map', 'vmap')


def stack_mode():
  """How a compiled step runs the S configurations of a stack: 'map' (one
  after another, `lax.map`) on a CPU, 'vmap' (batched) elsewhere; the
  environment variable NER_STACK_MODE=map|vmap forces one (the tests run
  the accelerators' 'vmap' on the CPU with it).

  On a CPU the batched program is no faster (bench: the vmapped sweep of 8
  took 9.9x one configuration's time), and the configurations run one by
  one are each computed exactly as their own run's program: on any mesh, a
  configuration's numbers are those of the one-device run, bit for bit. A
  batched program's products are not (their float sums may depend on the
  batch of configurations), nor, on a GPU, are its scatter-adds (atomics).
  """
  forced = os.environ.get('NER_STACK_MODE')
  if forced:
    if forced not in STACK_MODES:
      raise ValueError(f'NER_STACK_MODE={forced}: one of {STACK_MODES}')
    return forced
  return 'map' if jax.default_backend() == 'cpu' else 'vmap'


def _over_configs(run, state, data, order_SxN, first, num_steps, hyper, mode):
  """`run` for each of the stack's configurations (`stack_mode`)."""
  if mode == 'vmap':
    return jax.vmap(run, in_axes=(0, None, 0, None, None, 0))(
      state, data, order_SxN, first, num_steps, hyper
    )
  return jax.lax.map(
    lambda c: run(c[0], data, c[1], first, num_steps, c[2]),
    (state, order_SxN, hyper),
  )


def _run_stack(
  state, data, order_SxN, first, num_steps, hyper, task, max_steps, mode
):
  """`run_steps` for the S stacked configurations: one configuration's
  own program when S = 1, else `_over_configs` in `mode`. A device of a
  mesh runs it on its share of the configurations, so that one of them
  alone on a device runs the program of a run alone."""
  run = functools.partial(run_steps, task=task, max_steps=max_steps)
  if order_SxN.shape[0] == 1:
    squeeze = functools.partial(jax.tree.map, lambda a: a[0])
    state, metrics = run(
      squeeze(state), data, order_SxN[0], first, num_steps, squeeze(hyper)
    )
    return jax.tree.map(lambda a: a[None], (state, metrics))
  return _over_configs(
    run, state, data, order_SxN, first, num_steps, hyper, mode
  )


# XLA:CPU hands float32 matrix products to YNNPACK by default; its own
# (Eigen) kernels run these models' products faster: experiments/bench.py
# times the training step both ways in every run. Only the CPU gets it.
CPU_COMPILER_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type', ''),)


def default_compiler_options():
  """The training program's XLA options on the default backend."""
  return CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else ()


@functools.cache
def sharded_program(mesh, compiler_options=None):
  """The training loop on a mesh (research.training.parallel): configurations
  split over 'config', each one's batch over 'data' (jax.shard_map; the step's
  collectives are in parallel.across_data). The state and hyperparameters are
  sharded [config], the order [config, data], the data replicated."""
  if compiler_options is None:
    compiler_options = default_compiler_options()
  P = jax.sharding.PartitionSpec

  def run(
    state, data, order_SxN, first, num_steps, hyper, task, max_steps, mode
  ):
    def local(state, data, order_SxN, first, num_steps, hyper):
      return _run_stack(
        state, data, order_SxN, first, num_steps, hyper, task, max_steps,
        mode,
      )  # fmt: skip

    return jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P('config'), P(), P('config', 'data'), P(), P(), P('config')),
      out_specs=(P('config'), P('config')),
      check_vma=False,
    )(state, data, order_SxN, first, num_steps, hyper)

  return jax.jit(
    run,
    static_argnames=('task', 'max_steps', 'mode'),
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
    static_argnames=('task', 'max_steps', 'mode'),
    donate_argnames=('state',),
    compiler_options=dict(compiler_options) or None,
  )


@jax.jit
def stack(trees):
  """Stacks a list of S pytrees along a new leading axis (one compiled
  program, not one per leaf)."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@functools.partial(jax.jit, static_argnums=0)
def _initial_state(task, params, seeds_S):
  """The training state of S stacked configurations, one compiled program;
  it holds a copy of params (the state is donated to the training calls)."""
  params = jax.tree.map(lambda a: jnp.array(a, copy=True), params)
  return jax.vmap(task.init_state)(params, seeds_S)


@jax.jit
def unstack(tree, i):
  """The i-th configuration of a stacked pytree."""
  return jax.tree.map(lambda a: a[i], tree)


MAX_LOSS = divergence.MAX_LOSS  # the divergence guard's bound on a loss


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
  mesh = parallel.resolve(
    S, B, task.cfg.mesh, data_ok=getattr(task, 'data_parallel', True)
  )
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
  state = _initial_state(task, params, np.asarray(run_seeds, np.uint32))
  P = jax.sharding.PartitionSpec
  if mesh is not None:
    D = mesh.shape['data']
    run_task = task.on_data_axis(D) if D > 1 else task
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
    mode=stack_mode(),
  )


class Boundary(NamedTuple):
  """Where `Loop` stopped after a compiled call."""

  step: int  # steps taken in all
  epoch: int  # the epoch of the call (0-based)
  evaluate: bool  # an evaluation is due: every eval_every steps, and the end
  save: bool  # a checkpoint is due: every save_every steps, and the end
  done: bool  # the last call


class Loop:
  """The compiled training loop of S stacked configurations, stepped by
  the caller: iterating it runs up to `steps_per_call` steps per compiled
  call and yields a `Boundary` after each call, so that the caller
  evaluates, logs, selects and checkpoints between calls.

  A call never crosses an evaluation (`eval_every` steps, 0: each epoch)
  or checkpoint (`save_every`; 0: at every evaluation, None: none)
  boundary, nor a step of `stops` (a set the caller may add to).
  `lr_decay` (rho) divides epoch e's learning rates by
  1 + rho * e (`epoch_hyper`; 0: constant). `meter` (a meters.TrainMeter)
  holds the training metrics
  since the caller last took them; `params()` and `diverged()` are the
  stack's, on the host. Results do not depend on where the calls stop: the
  data order and the PRNG keys follow from (seed, step).
  """

  def __init__(
    self,
    task,
    params,
    hyper,
    seeds,
    data,
    *,
    num_examples,
    epochs,
    steps_per_epoch=None,
    eval_every=0,
    save_every=None,
    steps_per_call=500,
    compiler_options=None,
    lr_decay=0.0,
  ):
    self.seeds = [int(s) for s in seeds]
    S, B = len(self.seeds), task.batch_size()
    self.spe = steps_per_epoch or num_examples // B
    if self.spe == 0:
      raise UserError(
        f'`batch_size={B}` is larger than the {num_examples:,} training '
        'examples; pass a smaller `batch_size`'
      )
    self.task, self.epochs, self.lr_decay = task, epochs, lr_decay
    self.total_steps = self.spe * epochs
    self.eval_every = eval_every or self.spe
    # None: no checkpoints; 0: at every evaluation.
    self.save_every = (
      None if save_every is None else save_every or self.eval_every
    )
    self.hyper = Hyper(
      jnp.asarray(hyper.lr, jnp.float32).reshape(S),
      jnp.asarray(hyper.l2, jnp.float32).reshape(S),
    )
    self.placed = _place(
      task,
      params,
      self.hyper,
      self.seeds,
      data,
      num_examples,
      self.spe,
      compiler_options,
    )
    self.state = self.placed.state
    self.max_steps = max(1, min(steps_per_call, self.total_steps))
    # jit keys its cache on how arguments are passed: every call, the
    # compiling one included, passes them the same way.
    self.call = functools.partial(
      self.placed.program,
      task=self.placed.task,
      max_steps=self.max_steps,
      mode=stack_mode(),
    )
    self.meter = meters.TrainMeter(S, task.metric_names())
    self.step, self.start_step = 0, 0
    self.train_seconds = self.compile_seconds = 0.0
    self.per_step = []  # [S, steps, M] chunks, when the task keeps them
    self.stops = set()  # more steps where a call ends (a profile's window)

  def compile(self):
    """Compiles the program (or finds it in jit's cache) with a call of
    zero steps; returns the seconds it took."""
    t0 = time.perf_counter()
    p = self.placed
    self.state, _ = self.call(self.state, p.data, p.orders(0), 0, 0, p.hyper)
    jax.block_until_ready(self.state)
    self.compile_seconds = time.perf_counter() - t0
    return self.compile_seconds

  def resume_at(self, step, state):
    """Continues from a checkpoint's `step` and training state."""
    self.state, self.step, self.start_step = state, step, step

  def _next_call(self):
    """The number of steps of the next call: to the next boundary."""
    first = self.step % self.spe
    num = min(
      self.max_steps,
      self.spe - first,
      self.eval_every - self.step % self.eval_every,
    )
    if self.save_every:
      num = min(num, self.save_every - self.step % self.save_every)
    later = [s - self.step for s in self.stops if s > self.step]
    return min([num, *later])

  def epoch_hyper(self, epoch):
    """The placed Hyper of an epoch: lr / (1 + lr_decay * epoch), the
    inverse-time decay of the learning rate per epoch (Ma and Hovy, 2016),
    as float32 lr * float32(1 / (1 + lr_decay * epoch)); with no decay the
    placed Hyper itself."""
    hyper = self.placed.hyper
    if not self.lr_decay:
      return hyper
    factor = np.float32(1.0 / (1.0 + self.lr_decay * epoch))
    return hyper._replace(lr=hyper.lr * factor)

  def __iter__(self):
    p, host, order, order_epoch = self.placed, self.placed.host, None, None
    while self.step < self.total_steps:
      epoch, first = divmod(self.step, self.spe)
      if epoch != order_epoch:
        order, order_epoch = p.orders(epoch), epoch
        hyper = self.epoch_hyper(epoch)
      num = self._next_call()
      t = time.perf_counter()
      self.state, (sum_SxM, n_S, last_SxM, per_step) = self.call(
        self.state, p.data, order, first, num, hyper
      )
      sum_SxM = np.asarray(host(sum_SxM))  # waits for the device
      self.train_seconds += time.perf_counter() - t
      if self.task.keeps_per_step():
        self.per_step.append(np.asarray(host(per_step))[:, :num])
      n_S, last_SxM = np.asarray(host(n_S)), np.asarray(host(last_SxM))
      self.meter.add(sum_SxM, n_S, last_SxM, num)
      self.last_call = (epoch, sum_SxM, n_S)
      self.step += num
      done = self.step == self.total_steps
      save = self.save_every is not None and (
        self.step % self.save_every == 0 or done
      )
      yield Boundary(
        self.step, epoch, self.step % self.eval_every == 0 or done, save, done
      )

  def words_per_sec(self):
    """Windows (or words) of all S configurations per second of stepping."""
    steps = self.step - self.start_step
    S = len(self.seeds)
    return (
      steps * self.task.windows_per_step() * S / max(self.train_seconds, 1e-9)
    )

  def progress(self, name=''):
    """The progress line of the last call."""
    wps = self.words_per_sec()
    S = len(self.seeds)
    left = self.total_steps - self.step
    eta = left * self.task.windows_per_step() * S / wps
    gone = int(np.sum(self.diverged() >= 0))
    epoch, sum_SxM, n_S = self.last_call
    return (
      f'{name}epoch {epoch + 1}/{self.epochs} step '
      f'{self.step}/{self.total_steps} {self.meter.shown(sum_SxM, n_S)} '
      f'{wps:,.0f} windows/s ETA {eta:.0f}s'
      + (f' ({gone} diverged)' if gone else '')
    )

  def params(self):
    return self.placed.host(self.state.params)

  def diverged(self):
    """[S] the step each configuration diverged at (-1: none)."""
    return np.asarray(self.placed.host(self.state.diverged))

  def stats(self):
    out = {
      'train_windows_per_sec': self.words_per_sec(),
      'train_seconds': self.train_seconds,
      'compile_seconds': self.compile_seconds,
      'steps': self.step,
      'diverged_at': divergence.diverged_at(self.diverged()),
    }
    if self.task.keeps_per_step():
      names = self.task.metric_names()
      S, M = len(self.seeds), len(names)
      all_SxTxM = np.concatenate(
        self.per_step or [np.zeros((S, 0, M), np.float32)], axis=1
      )
      out['per_step'] = {m: all_SxTxM[:, :, j] for j, m in enumerate(names)}
    if self.placed.mesh is not None:
      out['mesh'] = dict(self.placed.mesh.shape)
    return out


def predict(fn, params, arrays, batch=8192, host=True):
  """fn(params, *arrays[i:i+batch]) over fixed-size batches, as numpy (or,
  host=False, as device arrays).

  `fn` is jitted and returns an array or a tuple of arrays with a leading
  axis of the batch. The n rows are split into ceil(n / batch) batches of
  equal size (one compiled shape; the last padded by fewer rows than a
  batch). Returns the outputs concatenated.
  """
  n = len(arrays[0])
  if n:
    batch = -(-n // -(-n // batch))  # ceil(n / the number of batches)
  outs = []
  for start in range(0, n, batch):
    part = [np.asarray(a[start : start + batch]) for a in arrays]
    pad = batch - len(part[0]) if n > batch else 0
    if pad:
      part = [np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in part]
    out = fn(params, *part)
    single = not isinstance(out, tuple)
    outs.append(((out,) if single else out, pad))
  if not outs:
    raise ValueError('predict: no data')
  if host:  # one transfer of every batch's outputs, once all are dispatched
    got = jax.device_get([out for out, _ in outs])
    outs = [(out, pad) for out, (_, pad) in zip(got, outs)]
  cat = np.concatenate if host else jnp.concatenate
  kept = [[o[: len(o) - pad] if pad else o for o in out] for out, pad in outs]
  joined = tuple(cat(parts) for parts in zip(*kept))
  return joined[0] if single else joined


def epoch_order(seed, epoch, n):
  """The order of the n training windows in an epoch: a permutation [n].

  Drawn on the host: jax.random.permutation sorts n keys on the device,
  about 0.1 s per CoNLL epoch on a CPU, which would count as training time.
  """
  rng = np.random.default_rng((int(seed) % 2**32, epoch))
  return rng.permutation(n).astype(np.int32)
