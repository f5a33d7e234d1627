"""Training throughput against this machine's own matmul peak.

Measured in one run, side by side (the timings compared in a ratio are taken
in interleaved rounds, `repeats` of each; the best round is kept):
  * the float32 matmul peak (GFLOP/s) of jitted square products, with XLA's
    default CPU options and with the training program's (the higher counts);
  * windows/s of the hidden model at batch sizes `batch_sizes`, with the data
    vocabulary and with the whole pretrained vocabulary (vocab=pretrained,
    400k words for GloVe), and the achieved GFLOP/s as a fraction of the peak;
  * the same step's matrix products alone (the counted FLOPs, nothing else),
    the ceiling for this model at each batch size;
  * at batch 256: the naive baseline (one jitted step per batch called from
    Python, batches sent from the host, dense optax updates of the whole
    table), the training program compiled with XLA's default options, and
    the lazy row update in its plain form (optim.lazy_row_update_plain);
  * a stacked sweep (engine.stack_mode) of `sweep_configs` L2 strengths
    against one configuration,
    with the least time the S configurations could take at the matmul peak;
  * when given, a sentence-level configuration (the best one's flags): words/s
    of research.training.sequence's training over packed sentences, in the same
    rounds as the default model at batch 256.
FLOPs per window are 3x the forward matmuls
(research.formulas.model.num_flops_per_window): the backward pass of each
product costs two products of the same size. Compilation is excluded from every
rate (it is reported separately)."""

import time

import jax
import jax.numpy as jnp
import numpy as np

from research import setup as setup_lib
from research.errors import UserError
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import driver
from research.training import engine
from research.training import optim
from research.training import sequence

XLA_DEFAULTS = ()  # compiler options: none, XLA's defaults


def rounds(timers, repeats):
  """Calls each timer (-> seconds) once per round, `repeats` rounds, so that
  what is compared is measured under the same conditions; best per timer."""
  times = {name: [] for name in timers}
  for _ in range(repeats):
    for name, timer in timers.items():
      times[name].append(timer())
  return {name: min(t) for name, t in times.items()}


def matmul_peak(compiler_options, sizes=(512, 1024, 2048), seconds=1.0):
  """Best float32 GFLOP/s of a jitted square matmul on the default device."""
  best = {}
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul, compiler_options=dict(compiler_options) or None)
    f(a, b).block_until_ready()
    reps = max(2, int(seconds * 50e9 / (2 * n**3)))
    rates = []
    for _ in range(3):
      t = time.perf_counter()
      for _ in range(reps):
        out = f(a, b)
      out.block_until_ready()
      rates.append(2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    best[n] = max(rates)
  return best


def matmul_floor(B, D, H, C, steps, compiler_options):
  """A timer of a step's matrix products alone, at batch B.

  Forward x W1^T and a W2^T, backward the gradients w.r.t. both weights and both
  inputs: the FLOPs research.formulas.model.num_flops_per_window counts, with
  nothing else (no gather, nonlinearity, loss or update). Each product reads the
  previous step's result, so none can be hoisted out of the loop."""
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (B, D))
  w1 = jax.random.normal(k[1], (H, D)) * 1e-3
  w2 = jax.random.normal(k[2], (C, H)) * 1e-3

  def body(_, c):
    x, w1, w2 = c
    a = x @ w1.T
    f = a @ w2.T
    da = f @ w2
    return (x - 1e-9 * (da @ w1), w1 - 1e-9 * (da.T @ x), w2 - 1e-9 * (f.T @ a))

  run = jax.jit(
    lambda c: jax.lax.fori_loop(0, steps, body, c),
    compiler_options=dict(compiler_options) or None,
  )
  jax.block_until_ready(run((x, w1, w2)))

  def timer():
    t = time.perf_counter()
    jax.block_until_ready(run((x, w1, w2)))
    return time.perf_counter() - t

  return timer


def fit_timer(
  params,
  windows,
  hyper,
  model_cfg,
  cfg,
  steps,
  seeds=(0,),
  compiler_options=None,
):
  """A timer of the classifier's stepping over `steps` steps (one compiled
  call) of the stacked `params`, driven as every run is
  (research.training.driver.fit_task); also returns the list that collects
  each run's compile seconds."""
  sub = _take(windows, steps * cfg.batch_size)
  task = classifier.ClassifierTask(
    model_cfg, cfg, objectives.get(cfg.objective, 'window')
  )
  compile_s = []
  S = len(seeds)
  hyper = engine.Hyper(
    np.broadcast_to(hyper.lr, S), np.broadcast_to(hyper.l2, S)
  )

  def timer():
    stats = driver.fit_task(
      task,
      params,
      hyper,
      seeds,
      classifier.device_data(sub),
      num_examples=len(sub.labels),
      epochs=1,
      steps_per_call=steps,
      compiler_options=compiler_options,
      log=lambda _: None,
    ).stats
    compile_s.append(stats['compile_seconds'])
    return stats['train_seconds']

  return timer, compile_s


def sentence_timer(ds, model_cfg, cfg, hyper, steps):
  """A timer of the sentence task's stepping (`steps` steps of one
  compiled call) on a Dataset's training sentences, driven as every run is
  (research.training.driver.fit_task); returns (timer, stats of each run)."""
  setup = setup_lib.resolve(ds, model_cfg, cfg).on_sentences()
  params = engine.stack([setup.init_params(0)])
  task, data, rows, task_stats = setup.task_and_data()
  runs = []

  def timer():
    stats = driver.fit_task(
      task,
      params,
      engine.Hyper([hyper.lr], [hyper.l2]),
      [0],
      data,
      num_examples=rows,
      epochs=1,
      steps_per_epoch=steps,
      steps_per_call=steps,
      log=lambda _: None,
    ).stats
    stats.update(task_stats)
    runs.append(stats)
    return stats['train_seconds']

  return timer, runs


def _take(windows, n):
  """The first n windows, tiled if there are fewer."""
  reps = -(-n // len(windows.labels))
  tile = lambda a: np.concatenate([a] * reps)[:n]
  return type(windows)(
    tile(windows.words),
    tile(windows.casing),
    tile(windows.labels),
    tile(windows.sentence_index),
  )


def naive_timer(params, windows, hyper, model_cfg, cfg, steps):
  """One jitted step per batch from Python, dense updates, host batches
  (the task's step on a batch of its own, read in order)."""
  cfg = cfg._replace(sparse=False)
  task = classifier.ClassifierTask(
    model_cfg, cfg, objectives.get(cfg.objective, 'window')
  )
  B = cfg.batch_size
  in_order = jnp.arange(B)
  step = jax.jit(
    lambda state, batch, hyper: task.step(state, batch, in_order, 0, hyper)
  )
  sub = _take(windows, steps * B)
  hyper = engine.Hyper(jnp.float32(hyper.lr), jnp.float32(hyper.l2))

  def timer():
    state = optim.init_state(params, cfg, jax.random.key(0))
    t = time.perf_counter()
    for i in range(steps):
      sl = slice(i * B, (i + 1) * B)
      batch = (sub.words[sl], sub.casing[sl], sub.labels[sl])
      state, loss = step(state, batch, hyper)
    loss.block_until_ready()
    return time.perf_counter() - t

  timer()  # compiles
  return timer


def init_stack(ds, model_cfg, seeds):
  """The stacked initial parameters of a window-level model, one per seed."""
  return engine.stack([setup_lib.init_params(ds, model_cfg, s) for s in seeds])


def check_batch_sizes(batch_sizes):
  if 256 not in batch_sizes:
    raise UserError(
      '`batch_sizes` must include 256: the vocabulary, naive '
      'and sweep comparisons are made at batch 256'
    )


def _measure_peak(train_options, peak_seconds, log):
  """The matmul peak (GFLOP/s) with XLA's default and the training options.

  Returns:
    (peak, by_options): the highest rate measured, and {'xla_defaults' |
    'train_options': {matrix size: GFLOP/s}}.
  """
  by_options = {
    'xla_defaults': matmul_peak(XLA_DEFAULTS, seconds=peak_seconds),
    'train_options': matmul_peak(train_options, seconds=peak_seconds),
  }
  peak = max(g for by_size in by_options.values() for g in by_size.values())
  log(
    f'matmul peak {peak:.1f} GFLOP/s; by size, XLA defaults / training '
    'options: '
    + ', '.join(
      f'{n}: {by_options["xla_defaults"][n]:.0f} / '
      f'{by_options["train_options"][n]:.0f}'
      for n in by_options['xla_defaults']
    )
  )
  return peak, by_options


def _batch_timers(
  vocab, ds, params, hyper, model_cfg, cfg, steps, D, train_options
):
  """The timers compared at batch cfg.batch_size on vocabulary `vocab`.

  'step' always; 'matmuls' (the products alone) for the hidden model on the
  data vocabulary; at batch 256 on the data vocabulary also 'naive'
  (scaled from at most 400 steps), 'xla_defaults' and 'plain_rows'.

  Returns:
    (timers, compile_s): {name: timer} and the compile seconds of 'step'.
  """
  B, train = cfg.batch_size, ds.windows['train']
  timers = {}
  timers['step'], compile_s = fit_timer(
    params, train, hyper, model_cfg, cfg, steps
  )
  if vocab == 'data' and model_cfg.model == 'hidden':
    timers['matmuls'] = matmul_floor(
      B, D, model_cfg.hidden, len(ds.tags), steps, train_options
    )
  if B == 256 and vocab == 'data':
    naive_steps = min(steps, 400)
    naive = naive_timer(
      engine.unstack(params, 0), train, hyper, model_cfg, cfg, naive_steps
    )
    timers['naive'] = lambda: naive() * steps / naive_steps
    timers['xla_defaults'], _ = fit_timer(
      params,
      train,
      hyper,
      model_cfg,
      cfg,
      steps,
      compiler_options=XLA_DEFAULTS,
    )
    timers['plain_rows'], _ = fit_timer(
      params, train, hyper, model_cfg, cfg._replace(packed_rows=False), steps
    )
  return timers, compile_s


def _batch_record(vocab, ds, B, steps, rate, flops, peak, compile_s):
  """The bench.json entry of one batch size: windows/s of each timer
  (`rate`), the step's GFLOP/s and fraction of the matmul `peak`."""
  run = {
    'vocab': vocab,
    'vocab_size': len(ds.vocab),
    'batch_size': B,
    'steps': steps,
    'windows_per_sec': rate['step'],
    'gflops': rate['step'] * flops / 1e9,
    'fraction_of_peak': rate['step'] * flops / 1e9 / peak,
    'compile_seconds': compile_s[0],
    'flops_per_window': flops,
  }
  if 'matmuls' in rate:
    run['matmuls_only_windows_per_sec'] = rate['matmuls']
    run['matmuls_only_fraction_of_peak'] = rate['matmuls'] * flops / 1e9 / peak
  if 'naive' in rate:
    run['naive_windows_per_sec'] = rate['naive']
    run['xla_defaults_windows_per_sec'] = rate['xla_defaults']
    run['plain_rows_windows_per_sec'] = rate['plain_rows']
  return run


def _log_batch(ds, B, rate, run, log):
  """Logs one batch size's rates (`rate`: windows/s per timer)."""
  log(
    f'vocab {len(ds.vocab):,} batch {B}: {rate["step"]:,.0f} windows/s, '
    f'{run["gflops"]:.1f} GFLOP/s = {100 * run["fraction_of_peak"]:.0f}% '
    'of peak'
    + ''.join(
      f'; {label} {rate[name]:,.0f}'
      for name, label in (
        ('matmuls', 'matmuls alone'),
        ('naive', 'naive'),
        ('xla_defaults', 'with XLA default options'),
        ('plain_rows', 'plain row update'),
      )
      if name in rate
    )
  )


def _measure_vocab(
  vocab,
  ds,
  model_cfg,
  cfg,
  hyper,
  *,
  batch_sizes,
  bench_steps,
  repeats,
  train_options,
  peak,
  log,
):
  """The bench.json entries of vocabulary `vocab` (all of `batch_sizes` on
  'data', batch 256 alone on 'pretrained'); the arguments are `run`'s."""
  params = init_stack(ds, model_cfg, [0])
  train = ds.windows['train']
  D = (2 * model_cfg.window + 1) * (ds.L_init.shape[1] + 5)
  flops = model_lib.num_flops_per_window(model_cfg, D, len(ds.tags))
  steps_budget = bench_steps * max(batch_sizes) or len(train.labels)
  runs = []
  for B in batch_sizes:
    if vocab == 'pretrained' and B != 256:
      continue
    steps = max(20, steps_budget // B)
    c = cfg._replace(batch_size=B)
    timers, compile_s = _batch_timers(
      vocab, ds, params, hyper, model_cfg, c, steps, D, train_options
    )
    seconds = rounds(timers, repeats)
    rate = {name: steps * B / s for name, s in seconds.items()}
    run = _batch_record(vocab, ds, B, steps, rate, flops, peak, compile_s)
    runs.append(run)
    _log_batch(ds, B, rate, run, log)
  return runs


def _measure_sweep(
  datasets, model_cfg, cfg, hyper, S, repeats, flops, peak, log
):
  """Times S stacked configurations against one, at batch 256, and the least
  seconds their FLOPs (`flops` per window) would take at the matmul `peak`;
  and, in the same rounds, the S configurations with the full vocabulary
  (datasets['pretrained']): a step touches the same rows of a larger table.

  Returns:
    The bench.json 'sweep' entry.
  """
  ds = datasets['data']
  train = ds.windows['train']
  steps = max(20, len(train.labels) // 256)
  c = cfg._replace(batch_size=256)
  one, _ = fit_timer(
    init_stack(ds, model_cfg, [0]), train, hyper, model_cfg, c, steps
  )
  sweep_hyper = engine.Hyper(np.full(S, hyper.lr), np.geomspace(1e-6, 1e-3, S))
  timers = {'one': one}
  for vocab, name in (('data', 'many'), ('pretrained', 'many_full_vocab')):
    timers[name], compile_s = fit_timer(
      init_stack(datasets[vocab], model_cfg, range(S)),
      datasets[vocab].windows['train'],
      sweep_hyper,
      model_cfg,
      c,
      steps,
      seeds=list(range(S)),
    )
    if name == 'many':
      many_compile = compile_s
  seconds = rounds(timers, repeats)
  at_peak = S * steps * 256 * flops / (peak * 1e9)
  sweep = {
    'configs': S,
    'steps': steps,
    'one_train_seconds': seconds['one'],
    'many_train_seconds': seconds['many'],
    'many_compile_seconds': many_compile[0],
    'train_ratio': seconds['many'] / seconds['one'],
    'many_seconds_at_matmul_peak': at_peak,
    'least_ratio_at_matmul_peak': at_peak / seconds['one'],
    'full_vocab': len(datasets['pretrained'].vocab),
    'data_vocab': len(ds.vocab),
    'full_vocab_train_seconds': seconds['many_full_vocab'],
    'full_vocab_ratio': seconds['many_full_vocab'] / seconds['many'],
  }
  log(
    f'stacked sweep ({engine.stack_mode()}): {S} configurations take '
    f'{sweep["train_ratio"]:.2f}x the training time of one; at the '
    f'matmul peak their FLOPs alone would take '
    f'{sweep["least_ratio_at_matmul_peak"]:.2f}x (compiling the '
    f'stacked program took {sweep["many_compile_seconds"]:.1f}s more); with '
    f'the full vocabulary ({sweep["full_vocab"]:,} words) they take '
    f'{sweep["full_vocab_ratio"]:.2f}x their time with the data vocabulary'
  )
  return sweep


def _measure_sentence(sentence, ds, model_cfg, cfg, hyper, repeats, log):
  """Words/s of a sentence-level configuration, timed in the same rounds as
  the default model (on `ds`, the data vocabulary) at batch 256.

  sentence: (name, Dataset, ModelConfig, TrainConfig), as `run` takes it.

  Returns:
    The bench.json 'sentence' entry.
  """
  name, sds, s_model_cfg, s_cfg = sentence
  train = ds.windows['train']
  sub_lengths = sequence.sentence_lengths(sds.splits['train'])
  T = sequence.row_length(sub_lengths)
  rows_total = len(sequence.pack(sub_lengths, T).tokens)
  s_steps = max(20, rows_total // max(1, s_cfg.batch_size // T))
  s_timer, s_runs = sentence_timer(sds, s_model_cfg, s_cfg, hyper, s_steps)
  c = cfg._replace(batch_size=256)
  steps = max(20, len(train.labels) // 256)
  d_timer, _ = fit_timer(
    init_stack(ds, model_cfg, [0]), train, hyper, model_cfg, c, steps
  )
  seconds = rounds({'sentence': s_timer, 'default': d_timer}, repeats)
  st = s_runs[0]
  words = s_steps * st['rows_per_step'] * st['fill'] * st['row_length']
  out = {
    'name': name,
    'steps': s_steps,
    'row_length': st['row_length'],
    'rows_per_step': st['rows_per_step'],
    'fill': st['fill'],
    'words_per_sec': words / seconds['sentence'],
    'default_windows_per_sec': steps * 256 / seconds['default'],
    'compile_seconds': st['compile_seconds'],
  }
  log(
    f'{name}: {out["words_per_sec"]:,.0f} words/s over packed '
    f'sentences (rows of {st["row_length"]}, {st["rows_per_step"]} per '
    f'step, {100 * st["fill"]:.1f}% words); the default model in the same '
    f'rounds: {out["default_windows_per_sec"]:,.0f} windows/s'
  )
  return out


def _speedups(runs, r256):
  """The default model's rate at batch 256 (`r256`) over the full
  vocabulary's, the naive baseline's, XLA's default options' and the plain
  row update's."""
  full = next(r for r in runs if r['vocab'] == 'pretrained')
  rate = r256['windows_per_sec']
  return {
    'full_vocab_time_ratio': rate / full['windows_per_sec'],
    'speedup_over_naive': rate / r256['naive_windows_per_sec'],
    'speedup_over_xla_defaults': rate / r256['xla_defaults_windows_per_sec'],
    'speedup_over_plain_rows': rate / r256['plain_rows_windows_per_sec'],
  }


def run(
  datasets,
  model_cfg,
  cfg,
  *,
  lr,
  batch_sizes,
  bench_steps=0,
  sweep_configs=8,
  repeats=3,
  log=print,
  sentence=None,
  peak_seconds=1.0,
):
  """Every measurement; returns the plain data written to bench.json.

  peak_seconds: about how long each matmul size of the peak is timed.

  datasets: {'data': Dataset, 'pretrained': Dataset} (the two vocabularies).
  sentence: optional (name, Dataset, ModelConfig, TrainConfig) of a
  sentence-level configuration to time beside the default.
  bench_steps: windows timed per measurement, in steps of the largest batch
  (0: one pass over the training windows).
  """
  check_batch_sizes(batch_sizes)
  hyper = engine.Hyper(lr, 0.0)
  train_options = engine.default_compiler_options()
  out = {
    'device': str(jax.devices()[0]),
    'backend': jax.default_backend(),
    'jax': jax.__version__,
    'train_compiler_options': dict(train_options),
    'repeats': repeats,
  }
  peak, by_options = _measure_peak(train_options, peak_seconds, log)
  out['matmul_peak_gflops'] = peak
  out['matmul_gflops_by_size'] = by_options

  out['runs'] = []
  for vocab in ('data', 'pretrained'):
    out['runs'] += _measure_vocab(
      vocab,
      datasets[vocab],
      model_cfg,
      cfg,
      hyper,
      batch_sizes=batch_sizes,
      bench_steps=bench_steps,
      repeats=repeats,
      train_options=train_options,
      peak=peak,
      log=log,
    )

  # Vmapped sweep: S configurations as one program vs one configuration.
  r256 = next(
    r for r in out['runs'] if r['vocab'] == 'data' and r['batch_size'] == 256
  )
  out['sweep'] = _measure_sweep(
    datasets,
    model_cfg,
    cfg,
    hyper,
    sweep_configs,
    repeats,
    r256['flops_per_window'],
    peak,
    log,
  )
  if sentence is not None:
    out['sentence'] = _measure_sentence(
      sentence, datasets['data'], model_cfg, cfg, hyper, repeats, log
    )
  out.update(_speedups(out['runs'], r256))
  out['batch_sizes'] = batch_sizes
  return out
