r"""Training throughput against this machine's own matmul peak.

  ./launch.sh bench --data_dir=../shared/data/conll2003 --workdir=runs/bench

Measured in one run, side by side:
  * the float32 matmul peak (GFLOP/s) of jitted square products;
  * windows/s of the hidden model at batch sizes --batch_sizes, with the data
    vocabulary and with the whole pretrained vocabulary (--vocab=pretrained,
    400k words for GloVe), and the achieved GFLOP/s as a fraction of the peak;
  * the naive baseline: one jitted step per batch called from Python, batches
    sent from the host, dense optax updates of the whole table;
  * the same step's matrix products alone (the counted FLOPs, nothing else),
    the ceiling for this model at each batch size;
  * a vmapped sweep of --sweep_configs L2 strengths against one configuration.
FLOPs per window are 3x the forward matmuls (research.model.num_flops_per_window):
the backward pass of each product costs two products of the same size.
Compilation is excluded from every rate (it is reported separately).
Writes bench.json, bench.md and throughput.png into --workdir.
"""

import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from experiments import reporting
from research import model as model_lib
from research import train as train_lib
from research import workdir as workdir_lib
from research.errors import UserError

_BATCH_SIZES = flags.DEFINE_list(
    'batch_sizes', ['64', '128', '256', '512', '1024', '2048', '4096'],
    'Batch sizes to time.')
_BENCH_STEPS = flags.DEFINE_integer(
    'bench_steps', 0, 'Windows timed per measurement, in steps of the '
    'largest batch (0: one pass over the training windows).')
_SWEEP_CONFIGS = flags.DEFINE_integer('sweep_configs', 8,
                                      'Configurations in the vmapped sweep.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats (best is kept).')


def matmul_peak(sizes=(512, 1024, 2048), seconds=1.0):
  """Best float32 GFLOP/s of a jitted square matmul on the default device."""
  best = {}
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
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
  return max(best.values()), best


def matmul_floor(B, D, H, C, steps, repeats):
  """Windows/s of a step's matrix products alone, at batch B.

  Forward x W1^T and a W2^T, backward the gradients w.r.t. both weights and
  both inputs: the FLOPs research.model.num_flops_per_window counts, with
  nothing else (no gather, nonlinearity, loss or update). Each product reads
  the previous step's result, so none can be hoisted out of the loop.
  """
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (B, D))
  w1 = jax.random.normal(k[1], (H, D)) * 1e-3
  w2 = jax.random.normal(k[2], (C, H)) * 1e-3

  def body(_, c):
    x, w1, w2 = c
    a = x @ w1.T
    f = a @ w2.T
    da = f @ w2
    return (x - 1e-9 * (da @ w1), w1 - 1e-9 * (da.T @ x),
            w2 - 1e-9 * (f.T @ a))

  run = jax.jit(lambda c: jax.lax.fori_loop(0, steps, body, c))
  jax.block_until_ready(run((x, w1, w2)))
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(run((x, w1, w2)))
    best = min(best, time.perf_counter() - t)
  return steps * B / best


def time_fit(params, windows, hyper, model_cfg, cfg, steps, repeats):
  """Best windows/s of train.fit over `repeats` runs of `steps` steps."""
  n = steps * cfg.batch_size
  sub = _take(windows, n)
  rates, compile_s = [], None
  for _ in range(repeats):
    _, _, stats = train_lib.fit(params, sub, hyper, model_cfg, cfg, epochs=1,
                                steps_per_call=steps, log=lambda _: None)
    rates.append(stats['train_windows_per_sec'])
    if compile_s is None:  # later repeats find the program in jit's cache
      compile_s = stats['compile_seconds']
  return max(rates), compile_s


def _take(windows, n):
  """The first n windows, tiled if there are fewer."""
  reps = -(-n // len(windows.labels))
  tile = lambda a: np.concatenate([a] * reps)[:n]
  return type(windows)(tile(windows.words), tile(windows.casing),
                       tile(windows.labels), tile(windows.sentence_index))


def time_naive(params, windows, hyper, model_cfg, cfg, steps, repeats):
  """One jitted step per batch from Python, dense updates, host batches."""
  cfg = cfg._replace(sparse=False)
  step = jax.jit(train_lib.train_step, static_argnames=('model_cfg', 'cfg'))
  B = cfg.batch_size
  sub = _take(windows, steps * B)
  hyper = train_lib.Hyper(jnp.float32(hyper.lr), jnp.float32(hyper.l2))
  rates = []
  for _ in range(repeats + 1):  # the first pass compiles
    state = train_lib.init_state(params, cfg, jax.random.key(0))
    t = time.perf_counter()
    for i in range(steps):
      sl = slice(i * B, (i + 1) * B)
      batch = (sub.words[sl], sub.casing[sl], sub.labels[sl])
      state, loss = step(state, batch, hyper, model_cfg=model_cfg, cfg=cfg)
    loss.block_until_ready()
    rates.append(steps * B / (time.perf_counter() - t))
  return max(rates[1:])


def init(ds, model_cfg, seed=0):
  return model_lib.init_params(jax.random.key(seed), model_cfg,
                               vocab_size=len(ds.vocab),
                               num_classes=len(ds.tags), embeddings=ds.L_init)


def main(_):
  workdir = common.workdir('bench')
  log = common.log
  batch_sizes = common.parse_list(_BATCH_SIZES.value, int, 'batch_sizes')
  if 256 not in batch_sizes:
    raise UserError('--batch_sizes must include 256: the vocabulary, naive '
                    'and sweep comparisons are made at batch 256')
  model_cfg = common.model_config()
  cfg = common.train_config()
  hyper = train_lib.Hyper(common.LR.value, 0.0)
  common.save_flags(workdir)
  out = {'device': str(jax.devices()[0]), 'backend': jax.default_backend(),
         'jax': jax.__version__}

  peak, by_size = matmul_peak()
  out['matmul_peak_gflops'] = peak
  out['matmul_gflops_by_size'] = by_size
  log(f'matmul peak {peak:.1f} GFLOP/s '
      f'({", ".join(f"{n}: {g:.0f}" for n, g in by_size.items())})')

  rows, out['runs'] = [], []
  datasets = {}
  for vocab in ('data', 'pretrained'):
    datasets[vocab] = ds = common.load_dataset(vocab=vocab)
    params = init(ds, model_cfg)
    D = (2 * model_cfg.window + 1) * (ds.L_init.shape[1] + 5)
    flops = model_lib.num_flops_per_window(model_cfg, D, len(ds.tags))
    steps_budget = _BENCH_STEPS.value * max(batch_sizes) or len(
        ds.windows['train'].labels)
    for B in batch_sizes:
      if vocab == 'pretrained' and B != 256:
        continue
      steps = max(20, steps_budget // B)
      c = cfg._replace(batch_size=B)
      wps, compile_s = time_fit(params, ds.windows['train'], hyper, model_cfg,
                                c, steps, _REPEATS.value)
      run = {'vocab': vocab, 'vocab_size': len(ds.vocab), 'batch_size': B,
             'windows_per_sec': wps, 'gflops': wps * flops / 1e9,
             'fraction_of_peak': wps * flops / 1e9 / peak,
             'compile_seconds': compile_s, 'flops_per_window': flops}
      if vocab == 'data' and model_cfg.model == 'hidden':
        mm = matmul_floor(B, D, model_cfg.hidden, len(ds.tags), steps,
                          _REPEATS.value)
        run['matmuls_only_windows_per_sec'] = mm
        run['matmuls_only_fraction_of_peak'] = mm * flops / 1e9 / peak
      if B == 256 and vocab == 'data':
        run['naive_windows_per_sec'] = time_naive(
            params, ds.windows['train'], hyper, model_cfg, c, min(steps, 400),
            _REPEATS.value)
      out['runs'].append(run)
      log(f'vocab {len(ds.vocab):,} batch {B}: {wps:,.0f} windows/s, '
          f'{run["gflops"]:.1f} GFLOP/s = {100 * run["fraction_of_peak"]:.0f}% '
          'of peak' + (f'; matmuls alone {run["matmuls_only_windows_per_sec"]:,.0f}'
                       f' ({100 * run["matmuls_only_fraction_of_peak"]:.0f}%)'
                       if 'matmuls_only_windows_per_sec' in run else '')
          + (f'; naive {run["naive_windows_per_sec"]:,.0f} windows/s'
             if 'naive_windows_per_sec' in run else ''))

  # Vmapped sweep: S configurations as one program vs one configuration.
  ds, S = datasets['data'], _SWEEP_CONFIGS.value
  steps = max(20, len(ds.windows['train'].labels) // 256)
  sub = _take(ds.windows['train'], steps * 256)
  one = init(ds, model_cfg)
  c = cfg._replace(batch_size=256)

  def timed(params, hyper, seed):
    return train_lib.fit(params, sub, hyper, model_cfg, c, epochs=1,
                         seed=seed, steps_per_call=steps,
                         log=lambda _: None)[2]

  stacked = jax.tree.map(lambda *a: jnp.stack(a),
                         *[init(ds, model_cfg, s) for s in range(S)])
  l2s = np.geomspace(1e-6, 1e-3, S)
  s1 = timed(one, hyper, 0)
  sS = timed(stacked, train_lib.Hyper(np.full(S, hyper.lr), l2s),
                 list(range(S)))
  out['sweep'] = {
      'configs': S, 'steps': steps,
      'one_train_seconds': s1['train_seconds'],
      'many_train_seconds': sS['train_seconds'],
      'many_compile_seconds': sS['compile_seconds'],
      'train_ratio': sS['train_seconds'] / s1['train_seconds']}
  log(f'vmapped sweep: {S} configurations take '
      f'{out["sweep"]["train_ratio"]:.2f}x the training time of one '
      f'(compiling the vmapped program took '
      f'{out["sweep"]["many_compile_seconds"]:.1f}s more)')

  small = [r for r in out['runs'] if r['vocab'] == 'data']
  r256 = next(r for r in small if r['batch_size'] == 256)
  full = next(r for r in out['runs'] if r['vocab'] == 'pretrained')
  out['full_vocab_time_ratio'] = r256['windows_per_sec'] / full[
      'windows_per_sec']
  out['speedup_over_naive'] = r256['windows_per_sec'] / r256[
      'naive_windows_per_sec']
  best = max(small, key=lambda r: r['windows_per_sec'])
  headers = ['vocab', 'batch', 'windows/s', 'GFLOP/s', '% of peak',
             'matmuls alone, windows/s (% of peak)', 'step time in matmuls']
  table = [[f'{r["vocab_size"]:,}', r['batch_size'],
            f'{r["windows_per_sec"]:,.0f}', f'{r["gflops"]:.1f}',
            f'{100 * r["fraction_of_peak"]:.0f}%'] + (
                [f'{r["matmuls_only_windows_per_sec"]:,.0f} '
                 f'({100 * r["matmuls_only_fraction_of_peak"]:.0f}%)',
                 f'{100 * r["windows_per_sec"] / r["matmuls_only_windows_per_sec"]:.0f}%']
                if 'matmuls_only_windows_per_sec' in r else ['—', '—'])
           for r in out['runs']]
  summary = reporting.markdown_table(['measure', 'value'], [
      ['matmul peak (GFLOP/s)', f'{peak:.1f}'],
      ['batch 256, windows/s', f'{r256["windows_per_sec"]:,.0f}'],
      ['naive baseline at batch 256, windows/s',
       f'{r256["naive_windows_per_sec"]:,.0f}'],
      ['speedup over naive at batch 256', f'{out["speedup_over_naive"]:.2f}x'],
      [f'best batch ({best["batch_size"]}), % of peak',
       f'{100 * best["fraction_of_peak"]:.0f}%'],
      [f'full vocabulary ({full["vocab_size"]:,}) time / data vocabulary '
       f'({r256["vocab_size"]:,}) time', f'{out["full_vocab_time_ratio"]:.2f}x'],
      [f'{S}-config vmapped sweep time / one config (training)',
       f'{out["sweep"]["train_ratio"]:.2f}x'],
      [f'{S}-config vmapped program, compile seconds (once per sweep)',
       f'{out["sweep"]["many_compile_seconds"]:.1f}'],
  ])
  fig, (ax,) = reporting.figure()
  ax.plot([r['batch_size'] for r in small],
          [r['windows_per_sec'] for r in small], 'o-', label='compiled loop, '
          'sparse rows')
  ax.axhline(peak * 1e9 / r256['flops_per_window'], color='gray', ls='--',
             label='matmul peak / FLOPs per window')
  ax.plot([256], [r256['naive_windows_per_sec']], 'rs', label='naive step')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('batch size')
  ax.set_ylabel('training windows/s')
  ax.set_title(f'hidden model, vocabulary {r256["vocab_size"]:,}')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  png = reporting.save(fig, workdir / 'throughput.png')
  workdir_lib.write_json(workdir / 'bench.json', out)
  reporting.write_report(workdir / 'bench.md', 'Training throughput', [
      ('Machine', f'{out["device"]} ({out["backend"]}), jax {out["jax"]}; '
                  f'FLOPs per window {r256["flops_per_window"]:,} (3x the '
                  'forward matmuls).'),
      ('Summary', summary),
      ('Reading the table', 'windows/s and GFLOP/s are those of the whole '
       'training step (gather, forward, backward, loss, sparse row update, '
       'Adam). "Matmuls alone" times only the step\'s matrix products (the '
       'FLOPs counted) at the same batch size, so it is the ceiling for this '
       'model on this machine; "step time in matmuls" is their share of the '
       'step.'),
      ('Throughput by batch size', reporting.markdown_table(headers, table)),
      ('Plot', f'![]({png})'),
  ])
  log('')
  log(summary)
  log(f'wrote {workdir}/bench.md')


if __name__ == '__main__':
  common.run(main)
